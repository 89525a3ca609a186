"""What a large k costs: one backend, one prepared index, k values timed alternately in one process.

The shared 2-core machine drifts by 10-20% within minutes, so timing k = 100 and k = 1000 one after the
other (as ``compare.py`` does, shape by shape) mixes the cost of k with the drift. Here each repetition
times every k once, in turn, and the medians are compared::

    python benchmarks/k_cost.py                                  # U=10k, I=1M, d=64, k 100 vs 1000
    python benchmarks/k_cost.py --users 2000 --ks 10 100 1000 4096 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mmrec_fast as mf  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--ks", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backend", default="native")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    index = mf.ItemIndex(items, backend=args.backend)
    print(f"{mf.available_backends()[args.backend]}")
    print(f"U={args.users} I={args.items} d={args.dim}, {args.repeats} alternating repetitions")
    index.topk(users[:64], max(args.ks))  # warm-up
    times = {k: [] for k in args.ks}
    for _ in range(args.repeats):
        for k in args.ks:
            start = time.perf_counter()
            index.topk(users, k)
            times[k].append(time.perf_counter() - start)
    base = statistics.median(times[args.ks[0]])
    for k in args.ks:
        med = statistics.median(times[k])
        print(
            f"k={k:6d}  median {med:8.3f} s  x{med / base:5.3f} of k={args.ks[0]}  "
            f"(runs: {', '.join(f'{t:.2f}' for t in times[k])})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
