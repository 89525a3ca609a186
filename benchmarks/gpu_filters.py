"""Cost of the CUDA kernels' in-kernel filters (allow / ban item mask, normalizer=False) on a GPU.

Issue #17's targets, measured on the device: a 10% ban list at most 5% slower than no filter, a 1% allow-list
faster than the full catalogue (tiles without an eligible item are skipped). Same process, conditions alternated
round by round, the median of the rounds per condition and its ratio to "none"; inputs already on the GPU
(torch CUDA tensors). Kernels: "simt" (float32 SIMT, the default), "bf16x6" (tensor cores, float32 inputs at
float32-level accuracy) and "mma16" (tensor cores on bfloat16 inputs). Every condition's lists are first compared
with the native CPU backend's on the first ``--check-users`` users (the fraction of identical id rows is printed;
the GPU-marked tests are the correctness gate).

Usage (on the device, after ``python3 benchmarks/gpu_check.py`` built the extension in place)::

    python3 benchmarks/gpu_filters.py [--users 20000] [--items 1000000] [--dim 64] [--k 100] [--rounds 3]

Prints one table; writes JSON to ``$OUT/gpu_filters.json`` when ``$OUT`` is set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import mmrec_fast as mf  # noqa: E402

KERNELS = ("simt", "bf16x6", "mma16")


def conditions(rng, n_items: int) -> dict[str, dict]:
    """Filter arguments per condition: random ban / allow lists at 1%, 10%, 90%, a contiguous 1% "category"."""
    out: dict[str, dict] = {"none": {}, "none, normalizer=False": {"normalizer": False}}
    for frac in (0.01, 0.10, 0.90):
        ids = np.sort(rng.choice(n_items, size=max(1, int(frac * n_items)), replace=False))
        out[f"ban {frac:.0%}"] = {"ban": ids}
        out[f"allow {frac:.0%}"] = {"allow": ids}
    start = n_items // 3
    out["allow 1% contiguous"] = {"allow": np.arange(start, start + max(1, n_items // 100))}
    return out


def run(users, items, k: int, rounds: int, conds: dict[str, dict], kernels=KERNELS, sync=None, check_users=64):
    """Rows (kernel, condition, median seconds, ratio to "none", agreement with the native backend).

    ``users`` / ``items``: float32 arrays of one family (torch CUDA tensors on the device); ``sync``: a callable
    that waits for the device (None: the calls are synchronous).
    """
    from mmrec_fast.backends import cuda_backend

    def host(x):
        return x.float().cpu().numpy() if hasattr(x, "cpu") else np.asarray(x, dtype=np.float32)

    rows = []
    for kernel in kernels:
        u, v = users, items
        if kernel == "mma16":
            u, v = users.bfloat16(), items.bfloat16()
        precision = "simt" if kernel == "simt" else "bf16x6"

        def call(filters, u=u, v=v, precision=precision, n=None):
            with cuda_backend.precision(precision):
                return mf.topk(u if n is None else u[:n], v, k, backend="cuda", **filters)

        agreement = {}
        host_u, host_v = host(u[:check_users]), host(v)
        for name, filters in conds.items():
            got = call(filters, n=check_users)
            cpu = mf.topk(host_u, host_v, k, backend="native", **filters)
            ids = got.indices.cpu().numpy() if hasattr(got.indices, "cpu") else got.indices
            agreement[name] = float(np.mean(np.all(ids == cpu.indices, axis=1)))
        times: dict[str, list[float]] = {name: [] for name in conds}
        for _ in range(rounds):
            for name, filters in conds.items():
                if sync:
                    sync()
                t0 = time.perf_counter()
                call(filters)
                if sync:
                    sync()
                times[name].append(time.perf_counter() - t0)
        base = float(np.median(times["none"]))
        for name in conds:
            med = float(np.median(times[name]))
            rows.append(dict(kernel=kernel, condition=name, seconds=med, ratio=med / base, agree=agreement[name]))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--check-users", type=int, default=64)
    args = parser.parse_args(argv)

    status = mf.available_backends()["cuda"]
    if not status.available:
        raise SystemExit(f"gpu_filters: no usable CUDA backend ({status.detail})")
    import torch

    rng = np.random.default_rng(0)
    users = torch.from_numpy(rng.standard_normal((args.users, args.dim), dtype=np.float32)).cuda()
    items = torch.from_numpy(rng.standard_normal((args.items, args.dim), dtype=np.float32)).cuda()
    conds = conditions(rng, args.items)
    mf.topk(users[:256], items, args.k, backend="cuda")  # warm-up: module load, first launch
    rows = run(users, items, args.k, args.rounds, conds, sync=torch.cuda.synchronize, check_users=args.check_users)

    print(f"# {status.detail}; U={args.users} I={args.items} d={args.dim} k={args.k}, median of {args.rounds}")
    print(f"{'kernel':8} {'condition':24} {'seconds':>9} {'/ none':>7} {'ids = native':>13}")
    for r in rows:
        print(f"{r['kernel']:8} {r['condition']:24} {r['seconds']:9.4f} {r['ratio']:7.3f} {r['agree']:13.3f}")
    for kernel in KERNELS:
        by = {r["condition"]: r for r in rows if r["kernel"] == kernel}
        ban = by["ban 10%"]["ratio"]
        allow = by["allow 1%"]["ratio"]
        print(
            f"{kernel}: 10% ban <= 1.05x none: {'PASS' if ban <= 1.05 else 'FAIL'} ({ban:.3f}); "
            f"1% allow < none: {'PASS' if allow < 1.0 else 'FAIL'} ({allow:.3f})"
        )
    out = os.environ.get("OUT")
    if out:
        path = Path(out) / "gpu_filters.json"
        path.write_text(json.dumps(dict(args=vars(args), device=status.detail, rows=rows), indent=1))
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
