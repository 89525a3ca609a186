"""Side-by-side timing of mmrec_fast's backends against the real alternatives, in one process run.

For each shape it first checks that every method agrees with the others (same ids up to float32 ties),
then times each (warm-up, repetitions, median), and prints seconds, speed relative to the NumPy
anchor, GFLOP/s (2*U*I*d per second) and the percentage of this machine's measured square-sgemm
rate -- all measured in the same run, because the machine is shared and bare seconds mean little.

Anchors (each computes what our engine computes -- top-k *and* the softmax normaliser -- unless noted):
  numpy      chunked ``matmul`` + ``argpartition`` + ``logsumexp``
  torch      chunked ``mm`` + ``topk`` + ``logsumexp`` (if torch is installed)
  faiss      ``faiss.knn`` inner product, top-k only (if faiss is installed)

It unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for its own process (they change which BLAS kernel
NumPy runs) and prints which BLAS kernel ran (threadpoolctl).

Usage::

    python benchmarks/compare.py --quick
    python benchmarks/compare.py --shapes 10000x100000x64x100 --json out.json
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # before numpy loads OpenBLAS
    os.environ.pop(_var, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import mmrec_fast as mf  # noqa: E402

QUICK_SHAPES = ["2000x50000x64x10", "2000x50000x64x100", "16x200000x64x100"]
DEFAULT_SHAPES = ["10000x100000x64x10", "10000x100000x64x100", "10000x100000x256x100", "16x1000000x64x100"]


def blas_info() -> str:
    """Which BLAS library, kernel (architecture) and thread count NumPy uses."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = [f"{p.get('internal_api')} {p.get('version')} kernel={p.get('architecture')} "
             f"threads={p.get('num_threads')}" for p in threadpool_info() if p.get("user_api") == "blas"]
    return "; ".join(parts) or "no BLAS found"


def sgemm_peak(n: int = 2048, repeats: int = 3) -> float:
    """Measured square float32 GEMM rate of this machine (GFLOP/s), median of ``repeats``."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def numpy_anchor(users, items, k, chunk=1024):
    """The straightforward NumPy way: chunked matmul, argpartition, sort, logsumexp."""
    n_users = users.shape[0]
    out_idx = np.empty((n_users, k), dtype=np.int64)
    out_lse = np.empty(n_users)
    for start in range(0, n_users, chunk):
        s = users[start:start + chunk] @ items.T
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out_idx[start:start + chunk] = np.take_along_axis(part, order, axis=1)
        m = s.max(axis=1, keepdims=True)
        out_lse[start:start + chunk] = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    return out_idx, out_lse


def torch_anchor(users, items, k, chunk=1024):
    import torch

    u, v = torch.from_numpy(users), torch.from_numpy(items)
    idx, lse = [], []
    with torch.inference_mode():
        for start in range(0, u.shape[0], chunk):
            s = u[start:start + chunk] @ v.T
            idx.append(torch.topk(s, k, dim=1).indices)
            lse.append(torch.logsumexp(s, dim=1))
    return torch.cat(idx).numpy(), torch.cat(lse).numpy()


def faiss_anchor(users, items, k):
    import faiss

    _, idx = faiss.knn(users, items, k, metric=faiss.METRIC_INNER_PRODUCT)
    return idx, None


def methods() -> dict:
    found = {}
    for name, status in mf.available_backends().items():
        if status.available:
            found[f"mmrec_fast[{name}]"] = (lambda n: lambda u, v, k: _ours(u, v, k, n))(name)
    found["numpy (matmul+argpartition)"] = numpy_anchor
    try:
        import torch  # noqa: F401

        found["torch (mm+topk)"] = torch_anchor
    except ImportError:
        pass
    try:
        import faiss  # noqa: F401

        found["faiss.knn (no normaliser)"] = faiss_anchor
    except ImportError:
        pass
    return found


def _ours(users, items, k, backend):
    result = mf.topk(users, items, k, backend=backend)
    return result.indices, result.log_normalizer


def agreement(ids_a, ids_b) -> float:
    """Share of (user, slot) pairs whose item sets agree (order-insensitive per user: ties may permute)."""
    same = [len(set(a) & set(b)) / len(a) for a, b in zip(ids_a.tolist(), ids_b.tolist())]
    return float(np.mean(same))


def run_shape(shape: str, repeats: int, peak: float, skip: set[str]) -> list[dict]:
    n_users, n_items, dim, k = (int(x) for x in shape.split("x"))
    rng = np.random.default_rng(0)
    users = rng.standard_normal((n_users, dim), dtype=np.float32) / np.float32(np.sqrt(dim))
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    flops = 2.0 * n_users * n_items * dim
    rows = []
    reference_ids = None
    for name, fn in methods().items():
        if any(s in name for s in skip):
            continue
        ids, lse = fn(users[: min(64, n_users)], items, k)  # warm-up and agreement check on a slice
        if reference_ids is None:
            reference_ids = ids
        agree = agreement(ids, reference_ids)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn(users, items, k)
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        rows.append(dict(shape=shape, method=name, seconds=seconds, gflops=flops / seconds / 1e9,
                         pct_peak=100 * flops / seconds / 1e9 / peak, agreement=agree))
        print(f"  {name:30s} {seconds:9.3f}s {flops / seconds / 1e9:8.1f} GFLOP/s "
              f"{100 * flops / seconds / 1e9 / peak:5.1f}% of sgemm  agree {agree:.4f}", flush=True)
    anchor = next((r["seconds"] for r in rows if r["method"].startswith("numpy (")), float("nan"))
    for r in rows:
        r["speedup_vs_numpy"] = anchor / r["seconds"]
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a minute or two)")
    parser.add_argument("--shapes", nargs="*", help="UxIxDxK shapes (default: the full set)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", nargs="*", default=[], help="skip methods whose name contains these")
    parser.add_argument("--json", help="write the rows as JSON here")
    args = parser.parse_args(argv)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else DEFAULT_SHAPES)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; BLAS: {blas_info()}")
    print("backends: " + "; ".join(str(s) for s in mf.available_backends().values()))
    peak = sgemm_peak()
    print(f"measured square sgemm (2048^3, NumPy): {peak:.1f} GFLOP/s")
    rows = []
    for shape in shapes:
        print(f"\nshape U x I x d x k = {shape}")
        rows += run_shape(shape, args.repeats, peak, set(args.skip))
    print("\n| shape (UxIxdxk) | method | time vs numpy | GFLOP/s | % sgemm peak | agreement |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['shape']} | {r['method']} | {r['speedup_vs_numpy']:.2f}x | {r['gflops']:.1f} | "
              f"{r['pct_peak']:.0f}% | {r['agreement']:.4f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(sgemm_gflops=peak, blas=blas_info(), rows=rows), f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
