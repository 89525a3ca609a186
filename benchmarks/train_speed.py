"""Training speed: our native BPR (and iALS when present) against implicit, one thread each, one process.

Both sides train on the same synthetic log (a power-law of user activity and item popularity, like
real logs: skew changes cache behaviour) with the same number of factors, one thread each: Numba's
pool is set to 1, implicit gets ``num_threads=1``, and threadpoolctl holds every BLAS/OpenMP pool to
one thread. Runs alternate (ours, theirs, ours, theirs, ...) so drift of a shared machine hits both;
each ratio is the median of the per-pair ratios.

- BPR: samples per second of a whole ``fit`` (setup included on both sides; both draw one triple per
  stored positive per epoch). Ours: :class:`mmrec_fast.models.BPRMF` (native trainer); implicit:
  ``implicit.cpu.bpr.BayesianPersonalizedRanking`` (its default ``verify_negative_samples=True``).
- iALS: seconds per epoch, two ways: whole ``fit`` / epochs (setup and our per-epoch objective
  included), and the solves alone (our ``history`` seconds; implicit's per-iteration callback time).
  Ours: :class:`mmrec_fast.models.ials.IALS` with conjugate gradient (3 steps, implicit's default);
  implicit: ``AlternatingLeastSquares`` (CG, 3 steps).
- Peak training memory: for each method, a fresh subprocess loads the saved log, fits a toy log (imports,
  JIT code), then samples its RSS every 5 ms during a one-epoch fit; reported as the peak minus the RSS
  just before that fit (the training matrix itself is not counted; its CSR size is printed).

Sizes: ``ml100k`` (943 users x 1682 items x 100k positives) and ``big`` (100k x 100k x 10M; about
10 minutes on a 2-core VM, hence not the default).

Usage::

    python benchmarks/train_speed.py [--sizes ml100k big] [--repeats 3] [--dim 64] [--out PATH]
"""

from __future__ import annotations

import os

# One thread everywhere before any numerical library loads its pools -- only when run as a script:
# a process that imports this module (the tests do) keeps its own environment and thread pools.
if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

#: users, items, positives; "tiny" only checks that the script runs.
SIZES = {"tiny": (60, 80, 900), "ml100k": (943, 1682, 100_000), "big": (100_000, 100_000, 10_000_000)}
#: Epochs per timed fit: enough that setup is a small share, few enough for a 2-core shared VM.
EPOCHS = {"tiny": {"bpr": 1, "als": 1}, "ml100k": {"bpr": 20, "als": 5}, "big": {"bpr": 2, "als": 1}}


def synthetic_log(n_users: int, n_items: int, nnz: int, seed: int = 0) -> sp.csr_matrix:
    """``nnz`` distinct (user, item) positives drawn with Zipf-like user activity and item popularity."""
    rng = np.random.default_rng(seed)
    user_w = 1.0 / np.arange(1, n_users + 1) ** 0.5
    item_w = 1.0 / np.arange(1, n_items + 1) ** 0.8
    user_w, item_w = user_w / user_w.sum(), item_w / item_w.sum()
    keys = np.empty(0, dtype=np.int64)
    while len(keys) < nnz:  # duplicates are redrawn until exactly nnz distinct pairs remain
        need = int((nnz - len(keys)) * 1.2) + 1000
        users = rng.choice(n_users, size=need, p=user_w)
        items = rng.choice(n_items, size=need, p=item_w)
        keys = np.unique(np.concatenate([keys, users.astype(np.int64) * n_items + items]))
    keys = rng.permutation(keys)[:nnz]
    # Shuffle ids so popular users/items are not adjacent rows (as in a real id map).
    user_perm, item_perm = rng.permutation(n_users), rng.permutation(n_items)
    matrix = sp.csr_matrix(
        (np.ones(nnz, np.float32), (user_perm[keys // n_items], item_perm[keys % n_items])), shape=(n_users, n_items)
    )
    matrix.sort_indices()
    return matrix


# --------------------------------------------------------------------------------------- trainers
def fit_ours_bpr(train, dim, epochs, seed=0):
    from mmrec_fast.models import BPRMF, TrainConfig

    config = TrainConfig(
        dim=dim, epochs=epochs, lr=0.05, reg=0.01, seed=seed, progress=False, threads=1, trainer="native"
    )
    return BPRMF(*train.shape, config).fit(train)


def fit_implicit_bpr(train, dim, epochs, seed=0):
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    model = BayesianPersonalizedRanking(
        factors=dim, learning_rate=0.05, regularization=0.01, iterations=epochs, num_threads=1, random_state=seed
    )
    model.fit(train, show_progress=False)
    return model


def fit_ours_als(train, dim, epochs, seed=0):
    from mmrec_fast.models.ials import IALS

    return IALS(*train.shape, dim=dim, epochs=epochs, solver="cg", cg_steps=3, seed=seed, num_threads=1).fit(train)


def fit_implicit_als(train, dim, epochs, seed=0):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=dim, regularization=0.01, iterations=epochs, use_cg=True, num_threads=1, random_state=seed
    )
    model.epoch_seconds = []  # implicit's callback gets each iteration's solve time (both half-steps)
    model.fit(train, show_progress=False, callback=lambda it, seconds, loss: model.epoch_seconds.append(seconds))
    return model


def solve_seconds(model) -> float | None:
    """Time spent in the epochs' solves alone (without setup or per-epoch extras), when the model says."""
    if hasattr(model, "epoch_seconds"):
        return float(sum(model.epoch_seconds))
    history = getattr(model, "history", None)
    if history and all("seconds" in e for e in history):
        return float(sum(e["seconds"] for e in history))
    return None


FITS = {
    ("ours", "bpr"): fit_ours_bpr,
    ("implicit", "bpr"): fit_implicit_bpr,
    ("ours", "als"): fit_ours_als,
    ("implicit", "als"): fit_implicit_als,
}


def have_ials() -> bool:
    try:
        from mmrec_fast.models.ials import IALS  # noqa: F401
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------------------- measuring
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_fit_memory(side: str, algo: str, path: str, dim: int) -> dict:
    """In this (fresh) process: load the log, then fit once while sampling RSS; peak minus RSS before."""
    with np.load(path) as parts:
        train = sp.csr_matrix((parts["data"], parts["indices"], parts["indptr"]), shape=tuple(parts["shape"]))
    # Imports and JIT code (loaded from Numba's cache) are not training memory: pay them on a toy log first.
    FITS[side, algo](synthetic_log(30, 40, 200), dim, 1)
    before = _rss_bytes()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.005)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    try:
        FITS[side, algo](train, dim, 1)
    finally:
        done.set()
        watcher.join()
    peak[0] = max(peak[0], _rss_bytes())
    return {"before_mb": before / 2**20, "peak_mb": peak[0] / 2**20, "training_mb": (peak[0] - before) / 2**20}


def measure_memory(side: str, algo: str, path: str, dim: int) -> dict:
    """:func:`peak_fit_memory` in a fresh interpreter. A fixed malloc mmap threshold makes every large
    buffer its own mapping (returned on free), so RSS tracks what the fit holds instead of hiding it in
    heap pages freed earlier."""
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(
        [sys.executable, __file__, "--_memory", side, algo, path, str(dim)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(fn, *args) -> tuple[float, float | None]:
    """(wall seconds of the whole fit, seconds inside its epochs as the model reports them)."""
    started = time.perf_counter()
    model = fn(*args)
    return time.perf_counter() - started, solve_seconds(model)


def compare(algo: str, train, dim: int, epochs: int, repeats: int) -> dict:
    """Alternating timed fits of ours and implicit; per-pair ratios (implicit time / our time)."""
    ours, theirs = FITS["ours", algo], FITS["implicit", algo]
    ours(train, dim, 1)  # warm-up: Numba compilation (cached on disk after the first run), page faults
    theirs(train, dim, 1)
    rows, inner = [], []
    for _ in range(repeats):
        (a, a_in), (b, b_in) = timed(ours, train, dim, epochs), timed(theirs, train, dim, epochs)
        rows.append((a, b))
        inner.append((a_in, b_in))
    our_t = [a for a, _ in rows]
    their_t = [b for _, b in rows]
    speedups = [b / a for a, b in rows]
    result = {
        "epochs_per_fit": epochs,
        "ours_s": our_t,
        "implicit_s": their_t,
        "speedup_median": statistics.median(speedups),
    }
    if algo == "bpr":
        result["ours_samples_per_s"] = statistics.median(train.nnz * epochs / t for t in our_t)
        result["implicit_samples_per_s"] = statistics.median(train.nnz * epochs / t for t in their_t)
    else:
        result["ours_epoch_s"] = statistics.median(t / epochs for t in our_t)
        result["implicit_epoch_s"] = statistics.median(t / epochs for t in their_t)
        result["ours_over_implicit_epoch"] = statistics.median(a / b for a, b in rows)
        # The solves alone: our IALS computes its objective after each epoch and implicit does not
        # (calculate_training_loss=False), so whole-fit times of one-epoch fits differ by more than the solves.
        result["ours_solve_epoch_s"] = statistics.median(a / epochs for a, _ in inner)
        result["implicit_solve_epoch_s"] = statistics.median(b / epochs for _, b in inner)
        result["ours_over_implicit_solve"] = statistics.median(a / b for a, b in inner)
    return result


def environment() -> dict:
    import implicit
    import numba
    from threadpoolctl import threadpool_info

    pools = [f"{p.get('user_api')}:{p.get('internal_api')} x{p.get('num_threads')}" for p in threadpool_info()]
    return {
        "machine": f"{platform.machine()} {os.cpu_count()} logical cpus ({platform.processor() or 'cpu'})",
        "python": platform.python_version(),
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "implicit": implicit.__version__,
        "threadpools": pools,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["ml100k"], choices=sorted(SIZES))
    parser.add_argument("--repeats", type=int, default=3, help="alternating (ours, implicit) pairs per comparison")
    parser.add_argument("--dim", type=int, default=64, help="factors, the same on both sides")
    parser.add_argument("--algos", nargs="+", default=["bpr", "als"], choices=["bpr", "als"])
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)

    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    algos = [a for a in args.algos if a == "bpr" or have_ials()]
    env = environment()
    print(
        f"machine: {env['machine']}; python {env['python']}, numba {env['numba']} "
        f"({env['numba_threads']} thread), implicit {env['implicit']} (num_threads=1); "
        f"thread pools held to 1 by threadpoolctl: {env['threadpools']}"
    )
    if "als" in args.algos and "als" not in algos:
        print("mmrec_fast.models.ials not importable: iALS rows skipped")
    report = {"environment": env, "dim": args.dim, "results": {}}
    with threadpool_limits(limits=1), tempfile.TemporaryDirectory() as scratch:
        for size in args.sizes:
            started = time.perf_counter()
            train = synthetic_log(*SIZES[size])
            data_mb = (train.data.nbytes + train.indices.nbytes + train.indptr.nbytes) / 2**20
            print(
                f"\n[{size}] {train.shape[0]} users x {train.shape[1]} items x {train.nnz} positives "
                f"(CSR {data_mb:.0f} MB, built in {time.perf_counter() - started:.1f} s), dim={args.dim}"
            )
            saved = os.path.join(scratch, f"{size}.npz")
            np.savez(saved, data=train.data, indices=train.indices, indptr=train.indptr, shape=np.array(train.shape))
            for algo in algos:
                epochs = EPOCHS[size][algo]
                res = compare(algo, train, args.dim, epochs, args.repeats)
                if algo == "bpr":
                    print(
                        f"  BPR  ours {res['ours_samples_per_s'] / 1e6:6.2f} M samples/s   implicit "
                        f"{res['implicit_samples_per_s'] / 1e6:6.2f} M samples/s   ours/implicit speed "
                        f"{res['speedup_median']:.2f}x (median of {args.repeats} alternating pairs, "
                        f"{epochs} epochs per fit)"
                    )
                else:
                    print(
                        f"  iALS ours {res['ours_epoch_s']:7.3f} s/epoch   implicit ALS {res['implicit_epoch_s']:7.3f} "
                        f"s/epoch   ours/implicit epoch time {res['ours_over_implicit_epoch']:.2f}x "
                        f"(whole fit / epochs; median of {args.repeats} alternating pairs, {epochs} epochs per fit)"
                    )
                    print(
                        f"       solves only: ours {res['ours_solve_epoch_s']:7.3f} s/epoch   implicit "
                        f"{res['implicit_solve_epoch_s']:7.3f} s/epoch   ratio {res['ours_over_implicit_solve']:.2f}x "
                        f"(our history 'seconds' vs implicit's per-iteration callback)"
                    )
                if not args.no_memory:
                    res["memory"] = {side: measure_memory(side, algo, saved, args.dim) for side in ("ours", "implicit")}
                    mem = res["memory"]
                    print(
                        f"       peak training memory (RSS above the loaded data): ours "
                        f"{mem['ours']['training_mb']:.0f} MB, implicit {mem['implicit']['training_mb']:.0f} MB"
                    )
                report["results"].setdefault(size, {})[algo] = res
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "--_memory":
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            print(json.dumps(peak_fit_memory(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))))
        raise SystemExit(0)
    raise SystemExit(main())
