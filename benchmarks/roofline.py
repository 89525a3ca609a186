"""The native engine's share of the machine's square-sgemm rate, each engine call paired with sgemm runs taken
seconds before it.

The shared 2-core machine's sgemm rate drifts by up to 2x within minutes, so a "% of sgemm" from rates
measured minutes apart (as ``compare.py`` must, shape by shape) mostly measures the drift. Here every
engine call is bracketed by square sgemm runs (NumPy/OpenBLAS, same thread count), and the ratio is
taken per pair; the median over pairs is the figure::

    python benchmarks/roofline.py                       # U=2048, I=1M, d=64 and 256, k=100
    python benchmarks/roofline.py --dims 64 --pairs 9
    python benchmarks/roofline.py --users 10000 --faiss   # also faiss.knn in each pair, order alternating

GFLOP/s of the engine count 2*U*I*d (the product alone: the normaliser and selection are the engine's
extra work), as ``compare.py`` does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

# Which BLAS kernel numpy runs must not depend on the caller's environment (see compare.py).
if __name__ == "__main__":  # a process importing this module (the tests) keeps its environment
    for _name in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(_name, None)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mmrec_fast as mf  # noqa: E402


def sgemm_rate(a: np.ndarray, b: np.ndarray, out: np.ndarray, runs: int) -> float:
    """Median GFLOP/s of ``runs`` square float32 products."""
    n = a.shape[0]
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def blas_line() -> str:
    try:
        from threadpoolctl import threadpool_info

        info = [i for i in threadpool_info() if i.get("user_api") == "blas"]
        return (
            ", ".join(
                f"{i.get('internal_api')} {i.get('version')} kernel={i.get('architecture')} "
                f"threads={i.get('num_threads')}"
                for i in info
            )
            or "unknown"
        )
    except ImportError:
        return "unknown (threadpoolctl not installed)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=2048)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--sgemm-n", type=int, default=2048)
    parser.add_argument("--sgemm-runs", type=int, default=5, help="sgemm runs before and after each call")
    parser.add_argument("--backend", default="native")
    parser.add_argument(
        "--faiss",
        action="store_true",
        help="also time faiss.knn (inner product, top-k only) in each pair, order alternating",
    )
    args = parser.parse_args(argv)

    print(f"{mf.available_backends()[args.backend]}")
    print(f"BLAS: {blas_line()}")
    rng = np.random.default_rng(0)
    a = rng.standard_normal((args.sgemm_n, args.sgemm_n), dtype=np.float32)
    b = rng.standard_normal((args.sgemm_n, args.sgemm_n), dtype=np.float32)
    out = np.empty_like(a)
    sgemm_rate(a, b, out, 3)  # warm-up
    for dim in args.dims:
        users = rng.standard_normal((args.users, dim), dtype=np.float32)
        users /= np.linalg.norm(users, axis=1, keepdims=True)
        items = rng.standard_normal((args.items, dim), dtype=np.float32)
        items /= np.linalg.norm(items, axis=1, keepdims=True)
        index = mf.ItemIndex(items, backend=args.backend)
        index.topk(users[:256], args.k)  # warm-up
        flops = 2.0 * args.users * args.items * dim
        if args.faiss:
            import faiss

            faiss.knn(users[:256], items, args.k, metric=faiss.METRIC_INNER_PRODUCT)  # warm-up
        shares, rates, peaks, speedups = [], [], [], []
        for pair in range(args.pairs):
            before = sgemm_rate(a, b, out, args.sgemm_runs)
            faiss_seconds = None
            if args.faiss and pair % 2 == 1:
                start = time.perf_counter()
                faiss.knn(users, items, args.k, metric=faiss.METRIC_INNER_PRODUCT)
                faiss_seconds = time.perf_counter() - start
            start = time.perf_counter()
            index.topk(users, args.k)
            seconds = time.perf_counter() - start
            rate = flops / seconds / 1e9
            if args.faiss and pair % 2 == 0:
                start = time.perf_counter()
                faiss.knn(users, items, args.k, metric=faiss.METRIC_INNER_PRODUCT)
                faiss_seconds = time.perf_counter() - start
            if faiss_seconds is not None:
                speedups.append(faiss_seconds / seconds)
            after = sgemm_rate(a, b, out, args.sgemm_runs)
            peak = (before + after) / 2
            rates.append(rate)
            peaks.append(peak)
            shares.append(rate / peak)
        print(
            f"U={args.users} I={args.items} d={dim} k={args.k}: engine {statistics.median(rates):.1f} GFLOP/s, "
            f"sgemm beside it {statistics.median(peaks):.1f} GFLOP/s (range {min(peaks):.0f}-{max(peaks):.0f}); "
            f"share per pair: median {100 * statistics.median(shares):.1f}% "
            f"(range {100 * min(shares):.0f}-{100 * max(shares):.0f}%)"
        )
        if speedups:
            print(
                f"  speed x faiss.knn per pair: median {statistics.median(speedups):.3f} "
                f"(range {min(speedups):.3f}-{max(speedups):.3f})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
