"""int8 first pass vs the native float32 path vs ``faiss.knn``, same process, alternating repetitions.

Usage::

    python benchmarks/int8_bench.py [--users 2000] [--items 1000000] [--reps 3] [--threads 2]

Rows: batch top-k (d = 64, k = 100; d = 256; k = 1000 vs k = 100), one user against the catalogue
(d = 64, k = 10, p50 over many queries). Before timing, the int8 result is checked bitwise against the
float32 path's (ids and scores) and FAISS's ids are compared. Prints the BLAS kernels FAISS/NumPy run
(threadpoolctl) and the int8 survivor fraction. Timings on a shared machine are noisy: compare ratios
within one run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

if __name__ == "__main__":  # a process importing this module (the tests) keeps its environment
    # The faiss-cpu wheel's OpenBLAS may fall back to a slow generic kernel on CPUs it does not know;
    # pin its best kernel for this process only (before NumPy loads OpenBLAS).
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")

import numpy as np


def _blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    return "; ".join(
        f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} threads={p.get('num_threads')}"
        for p in threadpool_info()
    )


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")
        flags = next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), [])
        wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
        simd = [f for f in flags if f in wanted]
        return f"{name}; {os.cpu_count()} CPUs visible; SIMD flags: {' '.join(simd)}"
    except OSError:
        return platform.processor()


def _time(fn, reps):
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def batch_rows(users, items, k, reps, threads, with_faiss=True):
    """Alternating timings of int8 (with / without normaliser), float32 native and faiss.knn."""
    import mmrec_fast as mf
    from mmrec_fast import int8

    index = mf.ItemIndex(items, backend="native")
    prepared = int8.prepare_int8(items)
    ref = index.topk(users, k, num_threads=threads)
    idx, sc, _, _ = int8.topk_int8(users, prepared, k, num_threads=threads)
    stats = int8.last_stats()
    exact = np.array_equal(idx, ref.indices) and np.array_equal(sc.view(np.uint32), ref.scores.view(np.uint32))
    methods = {
        "int8": lambda: int8.topk_int8(users, prepared, k, num_threads=threads),
        "int8 normalizer=False": lambda: int8.topk_int8(users, prepared, k, normalizer=False, num_threads=threads),
        "fp32 native": lambda: index.topk(users, k, num_threads=threads),
    }
    agree = ""
    if with_faiss:
        try:
            import faiss

            faiss.omp_set_num_threads(threads)
            _, fids = faiss.knn(users, items, k, metric=faiss.METRIC_INNER_PRODUCT)
            overlap = np.mean([len(set(a) & set(b)) / k for a, b in zip(fids, ref.indices)])
            agree = f"faiss ids overlap {overlap:.4f}"
            methods["faiss.knn"] = lambda: faiss.knn(users, items, k, metric=faiss.METRIC_INNER_PRODUCT)
        except ImportError:
            agree = "faiss not installed"
    times = {name: [] for name in methods}
    for _ in range(reps):  # alternate methods within each repetition
        for name, fn in methods.items():
            times[name] += _time(fn, 1)
    med = {name: statistics.median(t) for name, t in times.items()}
    return med, exact, stats, agree


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--items", type=int, default=1_000_000)
    ap.add_argument("--items256", type=int, default=200_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--single-reps", type=int, default=21)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from mmrec_fast import _native, int8

    rng = np.random.default_rng(0)
    print(f"machine: {_cpu()}")
    print(f"int8 levels (self-checked): {int8.int8_levels()}; used: {int8.int8_level()}")
    print(f"float32 SIMD level: {_native.simd_level()}; threads: {args.threads}")
    print(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}")

    def unit(n, d):
        return (rng.standard_normal((n, d)) / np.sqrt(d)).astype(np.float32)

    items64 = unit(args.items, 64)
    try:
        import faiss  # noqa: F401  (loads its OpenBLAS so threadpoolctl lists it)
    except ImportError:
        pass
    print(f"BLAS: {_blas_info()}")
    print()
    print("| case | method | seconds (median) | x fp32 | x faiss.knn | notes |")
    print("|---|---|---|---|---|---|")

    def report(case, med, exact, stats, agree):
        surv = stats["survivors"] / max(1, stats["pairs"])
        note = f"int8 == fp32 bitwise: {exact}; survivors {surv:.2e} of pairs; fallback users {stats['fallback_users']}"
        for name, sec in med.items():
            vs_fp32 = med["fp32 native"] / sec
            vs_faiss = med["faiss.knn"] / sec if "faiss.knn" in med else float("nan")
            extra = note if name == "int8" else ""
            print(f"| {case} | {name} | {sec:.3f} | {vs_fp32:.2f} | {vs_faiss:.2f} | {extra} |")
            if name == "fp32 native" and agree:
                print(f"| {case} | (agreement) | | | | {agree} |")

    users = unit(args.users, 64)
    case = f"U={args.users} I={args.items} d=64 k=100"
    report(case, *batch_rows(users, items64, 100, args.reps, args.threads))
    med1000 = batch_rows(users, items64, 1000, args.reps, args.threads, with_faiss=False)
    report(f"U={args.users} I={args.items} d=64 k=1000", *med1000)

    # One user, k = 10: p50 over many queries, methods alternating.
    import mmrec_fast as mf

    index = mf.ItemIndex(items64, backend="native")
    prepared = int8.prepare_int8(items64)
    times = {"int8": [], "int8 normalizer=False": [], "fp32 native": []}
    for q in range(args.single_reps):
        u = unit(1, 64)
        if q == 0:
            ref = index.topk(u, 10, num_threads=args.threads)
            idx, sc, _, _ = int8.topk_int8(u, prepared, 10, num_threads=args.threads)
            assert np.array_equal(idx, ref.indices) and np.array_equal(sc, ref.scores)
        times["int8"] += _time(lambda: int8.topk_int8(u, prepared, 10, num_threads=args.threads), 1)
        times["int8 normalizer=False"] += _time(
            lambda: int8.topk_int8(u, prepared, 10, normalizer=False, num_threads=args.threads), 1
        )
        times["fp32 native"] += _time(lambda: index.topk(u, 10, num_threads=args.threads), 1)
    p50 = {name: statistics.median(t) for name, t in times.items()}
    for name, sec in p50.items():
        ratio = p50["fp32 native"] / sec
        print(f"| U=1 I={args.items} d=64 k=10 (p50) | {name} | {sec * 1e3:.2f} ms | {ratio:.2f} | | |")
    del index, prepared, items64

    items256 = unit(args.items256, 256)
    users256 = unit(max(1, args.users // 2), 256)
    case = f"U={users256.shape[0]} I={args.items256} d=256 k=100"
    report(case, *batch_rows(users256, items256, 100, args.reps, args.threads))


if __name__ == "__main__":
    main()
