"""Cost of the engine's filters (allow / ban lists) against the unfiltered full-catalogue query.

Same process, conditions alternated round by round, native backend on a prepared ItemIndex; the
median of the rounds per condition and its ratio to "none" (the same round order every time). Also
times the two ways a global filter can run -- the kernel's item mask and the compact catalogue of the
eligible rows -- at a few eligible fractions, which is what sets ``_search.COMPACT_FRACTION``.

Usage::

    python benchmarks/filters_cost.py [--users 1000] [--items 200000] [--dim 64] [--k 100] [--rounds 3]

Output: docs/benchmarks/filters_cost.txt (committed).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import mmrec_fast as mf
from mmrec_fast import _search


def _conditions(rng, n_items):
    out = {"none": {}}
    for frac in (0.01, 0.10, 0.90):
        ids = rng.choice(n_items, size=int(frac * n_items), replace=False)
        out[f"ban {frac:.0%}"] = {"ban": ids}
        out[f"allow {frac:.0%}"] = {"allow": ids}
    return out


def _time(fn, rounds, names):
    """Median seconds per condition, conditions alternated within each round."""
    times = {name: [] for name in names}
    for _ in range(rounds):
        for name in names:
            t0 = time.perf_counter()
            fn(name)
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v)) for name, v in times.items()}


def _run(index, users, k, conditions, rounds, label, lines):
    reference = {name: mf.topk(users, index, k, **kw) for name, kw in conditions.items()}
    for name, kw in conditions.items():  # agreement before timing: filtered lists hold eligible items only
        ids = reference[name].indices
        if "allow" in kw:
            assert np.isin(ids[ids >= 0], kw["allow"]).all(), name
        if "ban" in kw:
            assert not np.isin(ids, kw["ban"]).any(), name
    med = _time(lambda name: mf.topk(users, index, k, **conditions[name]), rounds, list(conditions))
    lines.append(f"\n{label}: median of {rounds} alternating rounds")
    lines.append(f"  {'condition':<12} {'ms':>10} {'vs none':>8}")
    for name, t in med.items():
        lines.append(f"  {name:<12} {t * 1e3:10.2f} {t / med['none']:8.3f}")


def _mask_vs_compact(index, users, k, rng, rounds, label, lines):
    n_items = index.n_items
    lines.append(f"\n{label}: allow-list via the kernel mask vs the compact catalogue (ms, median of {rounds})")
    lines.append(f"  {'eligible':<9} {'mask':>9} {'compact':>9} {'compact/mask':>13}")
    saved = _search.COMPACT_FRACTION, _search.COMPACT_FRACTION_FEW_USERS
    try:
        for frac in (0.05, 0.10, 0.25, 0.50):
            allow = rng.choice(n_items, size=int(frac * n_items), replace=False)

            def run(mode, allow=allow):
                _search.COMPACT_FRACTION = _search.COMPACT_FRACTION_FEW_USERS = 1.0 if mode == "compact" else 0.0
                return mf.topk(users, index, k, allow=allow)

            a, b = run("mask"), run("compact")
            np.testing.assert_array_equal(a.indices, b.indices)
            med = _time(run, rounds, ["mask", "compact"])
            ratio = med["compact"] / med["mask"]
            lines.append(f"  {frac:<9.0%} {med['mask'] * 1e3:9.2f} {med['compact'] * 1e3:9.2f} {ratio:13.3f}")
    finally:
        _search.COMPACT_FRACTION, _search.COMPACT_FRACTION_FEW_USERS = saved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    items = (rng.standard_normal((args.items, args.dim)) / np.sqrt(args.dim)).astype(np.float32)
    users = (rng.standard_normal((args.users, args.dim)) / np.sqrt(args.dim)).astype(np.float32)
    index = mf.ItemIndex(items, backend="native")
    conditions = _conditions(rng, args.items)
    lines = [
        "benchmarks/filters_cost.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items() if k != "out"),
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"{mf.available_backends()['native'].detail}",
        f"load average at start: {os.getloadavg()[0]:.2f} (a shared machine: other jobs were running; "
        "ratios come from alternating rounds in one process)",
        f"COMPACT_FRACTION = {_search.COMPACT_FRACTION} (U >= {_search.FEW_USERS}), "
        f"{_search.COMPACT_FRACTION_FEW_USERS} (fewer users): allow/ban leaving at most this fraction eligible "
        "gather a compact catalogue; above it the kernel skips masked items",
    ]
    _run(index, users, args.k, conditions, args.rounds, f"U = {args.users}, I = {args.items}, d = {args.dim}", lines)
    one = users[:1]
    _run(index, one, args.k, conditions, args.rounds * 5, f"one user, I = {args.items}, d = {args.dim}", lines)
    _mask_vs_compact(index, users, args.k, rng, args.rounds, f"U = {args.users}", lines)
    _mask_vs_compact(index, one, args.k, rng, args.rounds * 5, "one user", lines)
    normal = _time(lambda flag: mf.topk(users, index, args.k, normalizer=flag), args.rounds, [True, False])
    lines.append(
        f"\nnormalizer=False vs True, U = {args.users}: {normal[False] * 1e3:.2f} ms vs {normal[True] * 1e3:.2f} ms "
        f"(speed-up {normal[True] / normal[False]:.3f}x)"
    )
    lines.append(f"load average at end: {os.getloadavg()[0]:.2f}")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(report + "\n")


if __name__ == "__main__":
    main()
