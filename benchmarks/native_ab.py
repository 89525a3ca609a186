"""Two builds of the native extension in one process, called alternately: what a change to the engine gains.

The shared 2-core machine drifts by 10-20% within minutes, so timing two builds in separate processes (or
one after the other) mixes the change with the drift. This script loads each build's ``_native`` module
side by side (each from its own clone, e.g. a ``git worktree`` of the older commit, built in place), calls
them alternately on the same packed items and users, checks that they return identical outputs, and
prints the medians and each build's cost of k relative to the first k::

    git worktree add /tmp/base <commit> && (cd /tmp/base && python setup.py build_ext --inplace)
    python benchmarks/native_ab.py --builds base=/tmp/base new=. --users 10000 --ks 100 1000 4096
"""

from __future__ import annotations

import argparse
import glob
import importlib.util
import statistics
import time
from pathlib import Path

import numpy as np


def load_native(tag: str, root: str):
    """Import ``<root>/mmrec_fast/_native*.so`` as module ``<tag>._native`` (its own copy in memory)."""
    found = sorted(glob.glob(str(Path(root) / "mmrec_fast" / "_native*.so")))
    if not found:
        raise SystemExit(f"--builds {tag}={root}: no mmrec_fast/_native*.so there (build it in place first)")
    spec = importlib.util.spec_from_file_location(f"{tag}._native", found[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--builds",
        nargs="+",
        required=True,
        metavar="TAG=DIR",
        help="clones holding a built mmrec_fast/_native*.so; the first is the baseline",
    )
    parser.add_argument("--users", type=int, default=2048)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--user-block", type=int, default=256)
    parser.add_argument("--item-block", type=int, default=512)
    parser.add_argument("--candidate-factor", type=int, default=2)
    args = parser.parse_args(argv)

    builds = {}
    for spec in args.builds:
        tag, _, root = spec.partition("=")
        if not tag or not root:
            raise SystemExit(f"--builds: expected TAG=DIR, got {spec!r}")
        builds[tag] = load_native(tag, root)
    tags = list(builds)
    first = builds[tags[0]]
    print(f"builds: {' '.join(args.builds)}; SIMD {first.simd_level()}, {first.max_threads()} threads")
    print(f"U={args.users} I={args.items} d={args.dim}, unit-norm random, {args.repeats} alternating repetitions")

    rng = np.random.default_rng(0)
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    packed = {t: m.pack_items(items) for t, m in builds.items()}
    indptr = np.zeros(args.users + 1, np.int64)
    indices = np.zeros(0, np.int64)

    def call(tag, k):
        out = (np.empty((args.users, k), np.int64), np.empty((args.users, k), np.float32), np.empty(args.users))
        start = time.perf_counter()
        builds[tag].topk(
            users,
            packed[tag],
            args.items,
            k,
            1.0,
            indptr,
            indices,
            args.user_block,
            args.item_block,
            max(args.candidate_factor * k, k + 16),
            0,
            *out,
        )
        return time.perf_counter() - start, out

    for tag in tags:  # warm-up (page faults, thread pool)
        call(tag, args.ks[0])
    times = {(t, k): [] for t in tags for k in args.ks}
    identical = {k: True for k in args.ks}
    for rep in range(args.repeats):
        for k in args.ks:
            outputs = {}
            for tag in tags if rep % 2 == 0 else tags[::-1]:  # alternate who goes first
                seconds, outputs[tag] = call(tag, k)
                times[(tag, k)].append(seconds)
            identical[k] &= all(np.array_equal(x, y) for t in tags[1:] for x, y in zip(outputs[tags[0]], outputs[t]))
    for k in args.ks:
        base = statistics.median(times[(tags[0], k)])
        for tag in tags:
            med = statistics.median(times[(tag, k)])
            runs = ", ".join(f"{s:.2f}" for s in times[(tag, k)])
            print(f"k={k:5d}  {tag:>8s}  median {med:7.3f} s  x{med / base:5.3f} of {tags[0]}  (runs: {runs})")
        print(f"k={k:5d}  outputs identical across builds: {identical[k]}")
    for tag in tags:
        base = statistics.median(times[(tag, args.ks[0])])
        print(
            f"{tag:>8s} cost of k: "
            + "  ".join(f"k={k}: x{statistics.median(times[(tag, k)]) / base:.3f}" for k in args.ks)
        )
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
