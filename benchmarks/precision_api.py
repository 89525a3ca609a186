"""precision="int8" vs "fp32" through the public API (ItemIndex.topk), small batches: where "auto" switches.

Same process, alternating fp32 / int8 calls, identical ids and scores checked before timing. Prints p50
per batch size and the ratio fp32 / int8 (> 1: int8 faster).

    python benchmarks/precision_api.py [--items 500000] [--dim 64] [--k 10] [--reps 15]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import mmrec_fast as mf
from mmrec_fast import int8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=500_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--users", type=int, nargs="+", default=[1, 4, 8, 16, 64])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    items = (rng.standard_normal((args.items, args.dim)) / np.sqrt(args.dim)).astype(np.float32)
    index = mf.ItemIndex(items, backend="native")
    index.topk(items[:1], 1, precision="int8")  # build the int8 form once (kept by the index)
    print(f"I = {args.items}, d = {args.dim}, k = {args.k}, int8 level {int8.int8_level()}, {index.memory_usage()}")
    print("users  fp32 p50 ms  int8 p50 ms  fp32/int8  auto picks")
    for n_users in args.users:
        users = (rng.standard_normal((n_users, args.dim)) / np.sqrt(args.dim)).astype(np.float32)
        a, b = index.topk(users, args.k, precision="fp32"), index.topk(users, args.k, precision="int8")
        assert np.array_equal(a.indices, b.indices) and np.array_equal(a.scores, b.scores)
        times: dict[str, list[float]] = {"fp32": [], "int8": []}
        for _ in range(args.reps):
            for precision in ("fp32", "int8"):
                t0 = time.perf_counter()
                index.topk(users, args.k, precision=precision)
                times[precision].append(time.perf_counter() - t0)
        fp32, fast = (1e3 * float(np.median(times[p])) for p in ("fp32", "int8"))
        auto = "int8" if index.topk(users, args.k, precision="auto").log_normalizer_bound is not None else "fp32"
        print(f"{n_users:5d}  {fp32:11.2f}  {fast:11.2f}  {fp32 / fast:9.2f}  {auto}")


if __name__ == "__main__":
    main()
