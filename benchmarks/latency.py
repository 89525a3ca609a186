"""Online latency: p50 / p99 of single queries, the engine beside a bare ``sgemv`` and FAISS, in one process.

Three measurements, each alternating its contenders call by call (the shared machine drifts, so every
contender sees the same drift):

1. **Fixed per-call cost** -- I = 1,000, d = 64, k = 10, 1 and 16 users: ``ItemIndex.topk`` and ``mf.topk``.
2. **The floor** -- I = 1,000,000, d = 64, k = 10, 1 and 16 users: ``ItemIndex.topk`` vs a bare NumPy
   ``items @ users.T`` (``sgemv`` / ``sgemm``: the memory-bound floor every exact scan pays) vs FAISS
   ``IndexFlatIP.search``. Top-k ids are checked to agree before timing.
3. **recommend()** -- one user of a factor model at I = 200,000, d = 64, k = 10 with an exclusion matrix,
   against ``ItemIndex.topk`` with that user's exclusions (the issue's 137 ms vs 25 ms).

The BLAS libraries in the process (NumPy's and the faiss-cpu wheel's OpenBLAS) are reported with
threadpoolctl. The faiss wheel's OpenBLAS picks its kernel from the CPU; ``--openblas-coretype`` sets
``OPENBLAS_CORETYPE`` for this process before faiss loads (only when run as a script)::

    python benchmarks/latency.py                                   # full run (a few minutes)
    python benchmarks/latency.py --quick                           # seconds: small sizes, few calls
    python benchmarks/latency.py --openblas-coretype Haswell --out docs/benchmarks/latency.txt
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import mmrec_fast as mf  # noqa: E402


def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) of per-call seconds, in microseconds."""
    arr = np.asarray(samples) * 1e6
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def alternate(contenders: dict, calls: int) -> dict[str, list[float]]:
    """Time every contender once per round, in turn, for ``calls`` rounds (after one warm-up call each)."""
    for fn in contenders.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter
    for _ in range(calls):
        for name, fn in contenders.items():
            start = clock()
            fn()
            times[name].append(clock() - start)
    return times


def report_block(title: str, times: dict[str, list[float]], base: str, out: list[str]) -> None:
    """Append one table: p50 / p99 per contender and the p50 ratio to ``base``."""
    out.append(title)
    ref = percentiles(times[base])[0]
    for name, samples in times.items():
        p50, p99 = percentiles(samples)
        out.append(f"  {name:34s} p50 {p50:10.1f} us   p99 {p99:10.1f} us   p50 x{p50 / ref:5.2f} of {base}")
    out.append("")


def unit(rng, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def fixed_cost(items_n: int, calls: int, out: list[str]) -> None:
    rng = np.random.default_rng(0)
    items = unit(rng, items_n, 64)
    index = mf.ItemIndex(items)
    for n_users in (1, 16):
        users = unit(rng, n_users, 64)
        times = alternate(
            {
                "ItemIndex.topk": lambda: index.topk(users, 10),
                "mf.topk (one-off, raw items)": lambda: mf.topk(users, items, 10),
            },
            calls,
        )
        report_block(
            f"fixed cost: I={items_n:,} d=64 k=10, {n_users} user(s), {calls} calls", times, "ItemIndex.topk", out
        )


def floor(items_n: int, calls: int, out: list[str]) -> None:
    rng = np.random.default_rng(1)
    items = unit(rng, items_n, 64)
    index = mf.ItemIndex(items)
    try:
        import faiss
    except ImportError:
        faiss = None
        out.append("  (faiss not installed: FAISS column skipped)")
    flat = None
    if faiss is not None:
        flat = faiss.IndexFlatIP(64)
        flat.add(items)
    for n_users in (1, 16):
        users = unit(rng, n_users, 64)
        contenders = {
            "ItemIndex.topk": lambda: index.topk(users, 10),
            "numpy items @ users.T (sgemv)": lambda: items @ users.T,
        }
        if flat is not None:
            contenders["faiss IndexFlatIP.search"] = lambda: flat.search(users, 10)
            got = index.topk(users, 10).indices
            _, ids = flat.search(users, 10)
            agree = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, ids)]))
            out.append(f"  top-10 overlap engine vs faiss ({n_users} users): {agree:.3f}")
        times = alternate(contenders, calls)
        report_block(f"floor: I={items_n:,} d=64 k=10, {n_users} user(s), {calls} calls", times, "ItemIndex.topk", out)


def recommend_vs_topk(items_n: int, calls: int, out: list[str]) -> None:
    import scipy.sparse as sp

    from mmrec_fast.models.base import Recommender, ScoreBlock
    from mmrec_fast.recommend import recommend

    class Factors(Recommender):
        """A fitted factor model stand-in: fixed user and item vectors."""

        def __init__(self, users, items):
            self._u, self._v = users, items

        n_users = property(lambda self: self._u.shape[0])
        n_items = property(lambda self: self._v.shape[0])

        def user_vectors(self):
            return self._u

        def item_vectors(self):
            return self._v

        def blocks(self):
            return [ScoreBlock("id", 0, self._u.shape[1])]

        def fold_in(self, history):  # pragma: no cover - not used here
            raise NotImplementedError

    rng = np.random.default_rng(2)
    users, items = unit(rng, 10_000, 64), unit(rng, items_n, 64)
    # 20 seen items per user (sp.random would draw from all U x I cells: gigabytes at this size).
    per_user = min(20, items_n)
    cols = np.sort(np.stack([rng.choice(items_n, per_user, replace=False) for _ in range(10_000)]), axis=1)
    indptr = np.arange(0, 10_000 * per_user + 1, per_user)
    seen = sp.csr_matrix((np.ones(cols.size, np.float32), cols.ravel(), indptr), shape=(10_000, items_n))
    model, index = Factors(users, items), mf.ItemIndex(items)
    one = seen[[7]]
    times = alternate(
        {
            "ItemIndex.topk (user 7, exclude)": lambda: index.topk(users[7:8], 10, exclude=one),
            "recommend(model, [7], exclude=seen)": lambda: recommend(model, [7], 10, exclude=seen),
        },
        calls,
    )
    report_block(
        f"recommend(): I={items_n:,} d=64 k=10, one user, {calls} calls",
        times,
        "ItemIndex.topk (user 7, exclude)",
        out,
    )


def machine(out: list[str]) -> None:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    out.append(f"machine: {cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}")
    out.append(f"python {platform.python_version()}, numpy {np.__version__}, mmrec_fast {mf.__version__}")
    out.append(f"engine: {mf.available_backends()['native'].detail}")
    out.append(f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}")
    try:
        from threadpoolctl import threadpool_info

        for lib in threadpool_info():
            out.append(
                f"  BLAS: {lib.get('internal_api')} {lib.get('version')} kernel={lib.get('architecture')} "
                f"threads={lib.get('num_threads')} ({Path(lib.get('filepath', '')).name})"
            )
    except ImportError:
        out.append("  (threadpoolctl not installed: BLAS kernels not reported)")
    out.append("")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes and few calls (a smoke run)")
    parser.add_argument("--calls", type=int, default=None, help="calls per contender (default 2000 / 200 / 100)")
    parser.add_argument(
        "--sizes", type=int, nargs=3, metavar=("FIXED", "FLOOR", "RECOMMEND"), help="catalogue sizes of the three parts"
    )
    parser.add_argument("--openblas-coretype", default=None, help="OPENBLAS_CORETYPE for faiss's OpenBLAS")
    parser.add_argument("--note", default="", help="a line added to the report (e.g. the machine's load)")
    parser.add_argument("--out", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    small, big, rec = (1_000, 20_000, 5_000) if args.quick else (1_000, 1_000_000, 200_000)
    many, few = (50, 10) if args.quick else (2000, 200)
    if args.calls is not None:
        many = few = args.calls
    if args.sizes is not None:
        small, big, rec = args.sizes
    out: list[str] = ["# benchmarks/latency.py" + (" --quick" if args.quick else "")]
    if args.note:
        out.append(f"# {args.note}")
    # faiss (and its OpenBLAS) must be imported after OPENBLAS_CORETYPE is set; imported here first so the
    # BLAS report below lists it.
    try:
        import faiss  # noqa: F401
    except ImportError:
        pass
    machine(out)
    fixed_cost(small, many, out)
    floor(big, few, out)
    recommend_vs_topk(rec, few, out)
    text = "\n".join(out)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    # Only as a script: a process that imports this module (the tests do) keeps its environment.
    for i, arg in enumerate(sys.argv):
        if arg == "--openblas-coretype" and i + 1 < len(sys.argv):
            os.environ["OPENBLAS_CORETYPE"] = sys.argv[i + 1]
        elif arg.startswith("--openblas-coretype="):
            os.environ["OPENBLAS_CORETYPE"] = arg.split("=", 1)[1]
    raise SystemExit(main())
