"""Side-by-side benchmark: mmrec_fast's backends against NumPy, PyTorch, FAISS and implicit, in one run.

For every shape, in one process run: build the problem, check that every method agrees with the
float64 reference on a slice of users (same ids up to float32 ties), then time each method (warm-up,
repetitions, median) and record seconds, speed relative to ``faiss.knn``, GFLOP/s (2*U*I*d per
second), percent of this machine's square-sgemm rate (the median of measurements taken before that
method's runs and after each of them), and peak extra memory (resident-set high-water mark above the
pre-call level, reset before each run via /proc/self/clear_refs).

Methods (what each computes):
  mmrec_fast[native|numba|numpy]  top-k + softmax normaliser over the eligible catalogue (exclusion inside)
  numpy (matmul+argpartition)     chunked matmul, argpartition, sort, logsumexp (top-k + normaliser)
  torch (mm+topk)                 chunked mm, topk, logsumexp (top-k + normaliser)
  faiss.knn / faiss IndexFlatIP   top-k only (exclusion: asks k+max_excluded, then filters)
  implicit topk                   top-k only (exclusion via filter_query_items)

The script unsets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE for its own process (they change which BLAS
kernel NumPy runs) and prints which BLAS kernel ran (threadpoolctl). Timings are only comparable within
one run: the machine is shared; ratios are what to read.

Usage::

    python benchmarks/compare.py --quick                 # small shapes, a few minutes
    python benchmarks/compare.py --acceptance            # the issue's acceptance shapes
    python benchmarks/compare.py                         # the full grid (long: an hour or more)
    python benchmarks/compare.py --shapes 10000x1000000x64x100+excl100 --skip numpy torch
"""

from __future__ import annotations

import ctypes
import os

if __name__ == "__main__":  # a process importing this module (the tests) keeps its environment
    for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # must happen before NumPy loads OpenBLAS
        os.environ.pop(_var, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

import mmrec_fast as mf  # noqa: E402
from mmrec_fast import validation  # noqa: E402
from mmrec_fast.reference import topk_reference  # noqa: E402

FULL_SHAPES = [f"10000x{i}x{d}x{k}" for d in (64, 256) for i in (100_000, 1_000_000) for k in (10, 100, 1000)] + [
    "10000x1000000x64x100+excl100",
    "10000x1000000x256x100+excl100",
    "1x1000000x64x100",
    "16x1000000x64x100",
]
ACCEPTANCE_SHAPES = [
    "10000x1000000x64x100",
    "10000x1000000x64x1000",
    "10000x1000000x64x100+excl100",
    "10000x1000000x256x100",
    "16x1000000x64x100",
]
QUICK_SHAPES = [
    "2000x100000x64x10",
    "2000x100000x64x100",
    "2000x100000x64x1000",
    "2000x100000x64x100+excl100",
    "1000x100000x256x100",
    "16x300000x64x100",
]
AGREEMENT_USERS = 16
MIN_AGREEMENT = 0.99


# --------------------------------------------------------------------------------------------------
# machine facts
def blas_info() -> str:
    """Which BLAS library, kernel (architecture) and thread count NumPy uses."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "threadpoolctl not installed"
    parts = [
        f"{p.get('internal_api')} {p.get('version')} kernel={p.get('architecture')} threads={p.get('num_threads')}"
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    return "; ".join(parts) or "no BLAS found"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sgemm_peak(n: int = 2048, repeats: int = 5) -> float:
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
    del a, b
    _release_free_memory()  # so the next method's "peak extra MB" is not served from these freed pages
    return 2 * n**3 / statistics.median(times) / 1e9


def _release_free_memory() -> None:
    """Hand glibc's free heap pages back to the OS (its dynamic mmap threshold keeps freed 16 MB arrays)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------
# problems and methods
@dataclass
class Problem:
    label: str
    users: np.ndarray
    items: np.ndarray
    k: int
    exclude: sp.csr_matrix | None

    @property
    def flops(self) -> float:
        return 2.0 * self.users.shape[0] * self.items.shape[0] * self.users.shape[1]

    def head(self, n: int) -> Problem:
        excl = None if self.exclude is None else self.exclude[:n]
        return Problem(self.label, self.users[:n], self.items, self.k, excl)


def make_problem(label: str) -> Problem:
    spec, _, extra = label.partition("+")
    n_users, n_items, dim, k = (int(x) for x in spec.split("x"))
    rng = np.random.default_rng(0)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    users /= np.linalg.norm(users, axis=1, keepdims=True)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    exclude = None
    if extra.startswith("excl"):
        per_user = int(extra[4:])
        cols = np.concatenate([rng.choice(n_items, per_user, replace=False) for _ in range(n_users)])
        indptr = np.arange(0, n_users * per_user + 1, per_user)
        exclude = sp.csr_matrix((np.ones(cols.size, dtype=np.float32), cols, indptr), shape=(n_users, n_items))
        exclude.sort_indices()
    return Problem(label, users, items, k, exclude)


def _ours(backend):
    def run(p: Problem):
        result = mf.topk(p.users, p.items, p.k, exclude=p.exclude, backend=backend)
        return result.indices, result.log_normalizer

    return run


def _filter_excluded(ids: np.ndarray, exclude, k: int) -> np.ndarray:
    """Drop excluded ids from over-fetched lists (for methods without per-user exclusion)."""
    if exclude is None:
        return ids[:, :k]
    out = np.full((ids.shape[0], k), -1, dtype=np.int64)
    for row in range(ids.shape[0]):
        seen = exclude.indices[exclude.indptr[row] : exclude.indptr[row + 1]]
        keep = ids[row][~np.isin(ids[row], seen)][:k]
        out[row, : keep.size] = keep
    return out


def _max_excluded(exclude) -> int:
    return 0 if exclude is None else int(np.diff(exclude.indptr).max(initial=0))


def numpy_anchor(p: Problem, chunk: int = 1024):
    """Chunked matmul, exclusion mask, argpartition, sort, logsumexp."""
    n_users, k = p.users.shape[0], p.k
    out_idx = np.empty((n_users, k), dtype=np.int64)
    out_lse = np.empty(n_users)
    for start in range(0, n_users, chunk):
        s = p.users[start : start + chunk] @ p.items.T
        if p.exclude is not None:
            block = p.exclude[start : start + chunk].tocoo()
            s[block.row, block.col] = -np.inf
        part = np.argpartition(-s, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(s, part, axis=1), axis=1, kind="stable")
        out_idx[start : start + chunk] = np.take_along_axis(part, order, axis=1)
        m = s.max(axis=1, keepdims=True)
        out_lse[start : start + chunk] = (m + np.log(np.exp(s - m).sum(axis=1, keepdims=True)))[:, 0]
    return out_idx, out_lse


def torch_anchor(p: Problem, chunk: int = 1024):
    """Chunked mm, exclusion mask, topk, logsumexp."""
    import torch

    u, v = torch.from_numpy(p.users), torch.from_numpy(p.items)
    idx, lse = [], []
    with torch.inference_mode():
        for start in range(0, u.shape[0], chunk):
            s = u[start : start + chunk] @ v.T
            if p.exclude is not None:
                block = p.exclude[start : start + chunk].tocoo()
                s[torch.from_numpy(block.row.astype(np.int64)), torch.from_numpy(block.col.astype(np.int64))] = -float(
                    "inf"
                )
            idx.append(torch.topk(s, p.k, dim=1).indices)
            lse.append(torch.logsumexp(s, dim=1))
    return torch.cat(idx).numpy(), torch.cat(lse).numpy()


def faiss_knn(p: Problem):
    import faiss

    extra = _max_excluded(p.exclude)
    _, ids = faiss.knn(p.users, p.items, p.k + extra, metric=faiss.METRIC_INNER_PRODUCT)
    return _filter_excluded(ids, p.exclude, p.k), None


def faiss_flat_ip(p: Problem):
    import faiss

    index = faiss.IndexFlatIP(p.items.shape[1])
    index.add(p.items)
    extra = _max_excluded(p.exclude)
    _, ids = index.search(p.users, p.k + extra)
    return _filter_excluded(ids, p.exclude, p.k), None


def implicit_topk(p: Problem):
    from implicit.cpu.topk import topk

    ids, _ = topk(p.items, p.users, p.k, filter_query_items=p.exclude, num_threads=0)
    return ids, None


def available_methods() -> dict:
    methods = {}
    for name, status in mf.available_backends().items():
        if status.available:
            methods[f"mmrec_fast[{name}]"] = _ours(name)
    methods["numpy (matmul+argpartition)"] = numpy_anchor
    for module, name, fn in [
        ("torch", "torch (mm+topk)", torch_anchor),
        ("faiss", "faiss.knn", faiss_knn),
        ("faiss", "faiss IndexFlatIP", faiss_flat_ip),
        ("implicit", "implicit topk", implicit_topk),
    ]:
        try:
            __import__(module)
            methods[name] = fn
        except ImportError:
            print(f"  ({name}: {module} not installed, skipped)")
    return methods


# --------------------------------------------------------------------------------------------------
def agreement(ids: np.ndarray, ref_ids: np.ndarray, ref_scores: np.ndarray, scores_of) -> float:
    """Share of listed items whose true score is within float32 rounding of the reference's slot score."""
    ok = 0
    total = 0
    for row in range(ids.shape[0]):
        got = ids[row][ids[row] >= 0]
        ref = ref_scores[row][: got.size]
        true = scores_of(row, got)
        tol = 1e-5 * max(1.0, float(np.abs(ref).max(initial=0.0)))
        ok += int(np.sum(np.abs(np.sort(true)[::-1] - ref) <= tol))
        total += max(got.size, int(np.sum(ref_ids[row] >= 0)))
    return ok / max(total, 1)


def time_method(
    fn, problem: Problem, repeats: int, slow_seconds: float, between=lambda: None
) -> tuple[list[float], float]:
    """Median-ready run times and the peak extra resident memory; ``between()`` runs after each run."""
    times, peak_mb = [], 0.0
    for _ in range(repeats):
        can_reset = _reset_peak()
        before = _status_kb("VmRSS:")
        start = time.perf_counter()
        fn(problem)
        times.append(time.perf_counter() - start)
        if can_reset:
            peak_mb = max(peak_mb, (_status_kb("VmHWM:") - before) / 1024)
        between()
        if times[-1] > slow_seconds:  # one run of a slow anchor is enough; recorded as n=1
            break
    return times, peak_mb


def run_shape(label: str, methods: dict, repeats: int, slow_seconds: float) -> list[dict]:
    problem = make_problem(label)
    head = problem.head(AGREEMENT_USERS)
    u64, v64 = head.users.astype(np.float64), problem.items.astype(np.float64)
    indptr, indices = validation.as_exclusion(head.exclude, head.users.shape[0], problem.items.shape[0])
    ref_ids, ref_scores, _ = topk_reference(u64, v64, problem.k, excl_indptr=indptr, excl_indices=indices, chunk=4)

    def scores_of(row, ids):
        return v64[ids] @ u64[row]

    inputs_mb = (problem.users.nbytes + problem.items.nbytes) / 2**20
    outputs_mb = problem.users.shape[0] * problem.k * (8 + 4 + 4) / 2**20
    rows = []
    for name, fn in methods.items():
        # The machine's sgemm rate before this method's runs and after each of them: their median is the
        # row's peak, so the "% of sgemm" compares against the machine as it was during those runs.
        peaks = [sgemm_peak(repeats=3)]
        ids, _ = fn(head)  # warm-up (JIT, thread pools) and the agreement check
        agree = agreement(np.asarray(ids), ref_ids, ref_scores, scores_of)
        times, peak_mb = time_method(
            fn, problem, repeats, slow_seconds, between=lambda: peaks.append(sgemm_peak(repeats=3))
        )
        row_peak = statistics.median(peaks)
        seconds = statistics.median(times)
        row = dict(
            shape=label,
            method=name,
            seconds=seconds,
            runs=len(times),
            gflops=problem.flops / seconds / 1e9,
            pct_sgemm=100 * problem.flops / seconds / 1e9 / row_peak,
            sgemm_gflops=row_peak,
            peak_extra_mb=peak_mb,
            inputs_mb=inputs_mb,
            outputs_mb=outputs_mb,
            agreement=agree,
        )
        rows.append(row)
        flag = "" if agree >= MIN_AGREEMENT else "   <-- DISAGREES with the reference"
        print(
            f"  {name:28s} {seconds:9.3f}s (n={len(times)}) {row['gflops']:7.1f} GFLOP/s "
            f"{row['pct_sgemm']:5.1f}% of {row_peak:5.1f} sgemm  peak +{peak_mb:7.0f} MB  agree {agree:.4f}{flag}",
            flush=True,
        )
    faiss_seconds = next((r["seconds"] for r in rows if r["method"] == "faiss.knn"), float("nan"))
    for r in rows:
        r["speed_vs_faiss_knn"] = faiss_seconds / r["seconds"]
    return rows


def write_chart(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(max(8, 1.6 * len(shapes)), 5))
    for i, method in enumerate(methods):
        values = [next((r["gflops"] for r in rows if r["shape"] == s and r["method"] == method), 0) for s in shapes]
        ax.bar(np.arange(len(shapes)) + i * width, values, width, label=method)
    ax.set_xticks(np.arange(len(shapes)) + 0.4 - width / 2)
    ax.set_xticklabels([s.replace("+", "\n+") for s in shapes], fontsize=8)
    ax.set_ylabel("GFLOP/s (2·U·I·d / s)")
    ax.set_title("Top-k throughput per method and shape (U×I×d×k), one run")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| shape U×I×d×k | method | seconds | × faiss.knn | GFLOP/s | % sgemm | peak extra MB | agreement |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['shape']} | {r['method']} | {r['seconds']:.3f} (n={r['runs']}) | "
            f"{r['speed_vs_faiss_knn']:.2f} | {r['gflops']:.1f} | {r['pct_sgemm']:.0f}% | "
            f"{r['peak_extra_mb']:.0f} | {r['agreement']:.4f} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="small shapes (a few minutes)")
    group.add_argument("--acceptance", action="store_true", help="the issue's acceptance shapes")
    group.add_argument("--shapes", nargs="+", help="UxIxDxK[+exclN] shapes")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (median)")
    parser.add_argument(
        "--slow-seconds", type=float, default=20.0, help="a method whose run takes longer is timed once"
    )
    parser.add_argument("--skip", nargs="*", default=[], help="skip methods whose name contains any of these")
    parser.add_argument("--only", nargs="*", default=[], help="run only methods whose name contains one of these")
    parser.add_argument("--out", default="benchmarks/results", help="directory for the JSON and PNG")
    args = parser.parse_args(argv)
    shapes = args.shapes or (QUICK_SHAPES if args.quick else ACCEPTANCE_SHAPES if args.acceptance else FULL_SHAPES)

    print(f"machine: {cpu_name()}, {os.cpu_count()} CPUs")
    print(f"BLAS: {blas_info()}")
    for status in mf.available_backends().values():
        print(f"backend {status}")
    methods = {
        n: f
        for n, f in available_methods().items()
        if not any(s in n for s in args.skip) and (not args.only or any(s in n for s in args.only))
    }
    peak = sgemm_peak()
    print(f"measured square sgemm (NumPy, 2048^3, median of 5): {peak:.1f} GFLOP/s")
    rows = []
    for label in shapes:
        print(f"\nshape U x I x d x k = {label}", flush=True)
        rows += run_shape(label, methods, args.repeats, args.slow_seconds)
        peak_now = sgemm_peak(repeats=3)
        print(f"  (sgemm re-measured after this shape: {peak_now:.1f} GFLOP/s)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    meta = dict(
        machine=cpu_name(),
        cpus=os.cpu_count(),
        blas=blas_info(),
        sgemm_gflops=peak,
        command="python benchmarks/compare.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    )
    (out / f"compare-{stamp}.json").write_text(json.dumps(dict(meta, rows=rows), indent=2))
    write_chart(rows, out / f"compare-{stamp}.png")
    print("\n" + markdown_table(rows))
    print(f"\nwrote {out / f'compare-{stamp}.json'} and .png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
