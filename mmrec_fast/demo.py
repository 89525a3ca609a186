"""The two demos: the synthetic seed example and the MovieLens-100K run with its output folder.

``mmrec-fast demo --synthetic``: 1,000 users x 10,000 items x 10 dimensions, random and seeded; interest probabilities
p_ij = softmax_j(u_i . v_j); the top-10 list of the first users with their probabilities; the naive
``exp(s) / sum(exp(s))`` next to the engine once the scores are large; each backend's time and
agreement with the float64 reference.

``mmrec-fast demo``: the pipeline of :func:`mmrec_fast.pipeline.run_experiment` on MovieLens-100K,
written to an output folder that is replaced atomically and only when it is an earlier demo's output.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np

from .backends import available_backends
from .engine import topk
from .reference import topk_reference
from .result import probabilities

__all__ = ["run_synthetic_demo", "run_movielens_demo", "demo_output_files", "DEMO_MANIFEST"]


def _naive_softmax(scores: np.ndarray) -> np.ndarray:
    """The textbook formula, deliberately without the max shift."""
    with np.errstate(over="ignore", invalid="ignore"):
        e = np.exp(scores)
        return e / e.sum(axis=1, keepdims=True)


def _print_lists(result, n_show: int) -> None:
    k = result.indices.shape[1]
    print(f"Top-{k} items of the first {n_show} users (item id: probability):")
    for user in range(min(n_show, len(result))):
        cells = "  ".join(f"{i:5d}:{p:.4f}" for i, p in zip(result.indices[user], result.probs[user]))
        print(f"  user {user:3d}  {cells}")


def _overflow_table(users: np.ndarray, items: np.ndarray, k: int) -> None:
    print("\nNaive exp(s)/sum(exp(s)) versus the engine, as the embeddings grow (float64 naive formula):")
    print(
        f"  {'scale':>5}  {'max score':>9}  {'naive: NaN rows':>15}  {'engine: NaN rows':>16}  "
        f"{'engine: max |p - p_ref|':>23}"
    )
    for scale in (1.0, 10.0, 30.0):
        u, v = users * scale, items * scale
        dense = u @ v.T
        naive_nan_rows = int(np.isnan(_naive_softmax(dense)).any(axis=1).sum())
        ours = topk(u, v, k)
        ref_idx, ref_scores, ref_lse = topk_reference(u, v, k)
        ref_probs = probabilities(ref_scores, ref_lse, 1.0)
        err = float(np.abs(ours.probs - ref_probs).max())
        ours_nan_rows = int(np.isnan(ours.probs).any(axis=1).sum())
        print(
            f"  {scale:5.0f}  {dense.max():9.1f}  {naive_nan_rows:>9d}/{len(u):<5d}  "
            f"{ours_nan_rows:>10d}/{len(u):<5d}  {err:23.2e}"
        )
    print(
        "  (the engine computes scores in float32: at |score| ~ 2e4 one float32 ulp is ~2e-3, which bounds\n"
        "   how closely any float32 engine can match float64 probabilities there; no NaN, no overflow)"
    )


def _backend_table(users: np.ndarray, items: np.ndarray, k: int) -> None:
    print(
        f"\nBackends (U={len(users):,}, I={len(items):,}, d={users.shape[1]}, k={k}); "
        "agreement with the float64 NumPy reference:"
    )
    start = time.perf_counter()
    ref_idx, ref_scores, ref_lse = topk_reference(users, items, k)
    ref_seconds = time.perf_counter() - start
    ref_probs = probabilities(ref_scores, ref_lse, 1.0)
    print(f"  {'backend':8s} {'time':>9s} {'vs ref':>7s}  {'same ids':>8s}  {'max|dlse|':>9s}  {'max|dp|':>8s}  detail")
    print(
        f"  {'ref f64':8s} {ref_seconds * 1e3:7.1f}ms {1.0:6.2f}x  {'-':>8s}  {'-':>9s}  {'-':>8s}  "
        "float64 NumPy, dense per user chunk"
    )
    for name, status in available_backends().items():
        if not status.available:
            print(f"  {name:8s} {'unavailable':>9s}  {status.detail}")
            continue
        topk(users[:4], items, k, backend=name)  # warm-up: JIT compilation, thread pools
        times = []
        for _ in range(3):
            start = time.perf_counter()
            result = topk(users, items, k, backend=name)
            times.append(time.perf_counter() - start)
        seconds = float(np.median(times))
        same = float((result.indices == ref_idx).all(axis=1).mean())
        dlse = float(np.abs(result.log_normalizer - ref_lse).max())
        dp = float(np.abs(result.probs - ref_probs).max())
        detail = available_backends()[name].detail  # after the run: thread pools are initialised
        print(
            f"  {name:8s} {seconds * 1e3:7.1f}ms {ref_seconds / seconds:6.2f}x  {same:8.1%}  {dlse:9.1e}  "
            f"{dp:8.1e}  {detail}"
        )
    print(
        "  (time: median of 3 runs; 'vs ref' = reference time / backend time, same run; "
        "'same ids' = users whose whole list equals the reference's)"
    )


def run_synthetic_demo(
    n_users: int = 1000, n_items: int = 10000, dim: int = 10, k: int = 10, seed: int = 42, show: int = 10
) -> int:
    """Run the seed example and print its report; returns 0.

    Parameters
    ----------
    n_users, n_items, dim : int
        Problem size (default: the design document's 1,000 x 10,000 x 10).
    k : int
        List length.
    seed : int
        Seed of the random embeddings.
    show : int
        Number of users whose lists are printed.
    """
    rng = np.random.default_rng(seed)
    users = rng.normal(size=(n_users, dim))
    items = rng.normal(size=(n_items, dim))
    print(f"mmrec_fast synthetic demo: {n_users:,} users x {n_items:,} items x {dim} dimensions, seed {seed}")
    print("Interest probabilities p_ij = exp(u_i.v_j) / sum_k exp(u_i.v_k) over the whole catalogue.\n")
    _print_lists(topk(users, items, k), show)
    _overflow_table(users, items, k)
    _backend_table(users, items, k)
    return 0


# -- the MovieLens demo's output folder -------------------------------------------------------------

#: Lists every file the MovieLens demo wrote, so a later run can recognise (and, with --overwrite,
#: replace) its own output and nothing else.
DEMO_MANIFEST = ".mmrec_fast_demo.json"


def demo_output_files(directory) -> frozenset[str] | None:
    """The files of an earlier demo's output in ``directory`` (from its manifest), or None if it is not one."""
    try:
        manifest = json.loads((Path(directory) / DEMO_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not (
        isinstance(manifest, dict)
        and manifest.get("library") == "mmrec_fast"
        and isinstance(manifest.get("files"), list)
        and all(isinstance(f, str) for f in manifest["files"])
    ):
        return None
    return frozenset(manifest["files"]) | {DEMO_MANIFEST}


def _link_or_copy(src: str, dst: str) -> None:
    """Hard link (free, same disk) or else copy: reusing the earlier run's embedding cache."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def run_movielens_demo(out, *, device: str = "cpu", progress: bool = True, overwrite: bool = False, log=print) -> int:
    """MovieLens-100K end to end, written to ``out`` as one atomic replacement; returns 0.

    Parameters
    ----------
    out : str or os.PathLike
        Output directory: absent, empty, or -- with ``overwrite`` -- the output of an earlier demo
        holding nothing else (recognised by its manifest ``.mmrec_fast_demo.json``). Everything is
        built in a hidden sibling and renamed into place at the end, so an interrupted run leaves
        the earlier output untouched. The earlier run's text-embedding cache is reused.
    device : str
        Torch device for the text encoder and training.
    progress : bool
        Progress bars.
    overwrite : bool
        Replace the output of an earlier demo.
    log : callable
        Where messages go.

    Raises
    ------
    ValueError
        ``out`` is a file, a symbolic link, a directory holding anything else, or an earlier demo
        output without ``overwrite`` (the message starts with ``--out``).
    """
    from ._outputs import check_output_dir, list_files, make_staging_dir, replace_dir
    from .data import load_movielens_100k
    from .models import TrainConfig
    from .pipeline import run_experiment

    target = check_output_dir(
        out,
        argument="--out",
        overwrite=overwrite,
        recognise=demo_output_files,
        what="demo output",
        overwrite_hint="--overwrite",
    )
    started = time.perf_counter()
    data = load_movielens_100k()
    log(f"MovieLens-100K: {data}")
    staging = make_staging_dir(target)
    try:
        if (target / "cache").is_dir():
            shutil.copytree(target / "cache", staging / "cache", copy_function=_link_or_copy)
        config = TrainConfig(device=device, progress=progress)

        def relay(message) -> None:
            # The experiment writes into the staging folder; tell the user where the files will be.
            log(str(message).replace(str(staging), str(target)))

        run_experiment(data, config=config, out_dir=staging, device=device, progress=progress, log=relay)
        manifest = {"library": "mmrec_fast", "output": "demo", "files": list_files(staging)}
        (staging / DEMO_MANIFEST).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
        replace_dir(staging, target, demo_output_files)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log(f"demo finished in {time.perf_counter() - started:.0f} s")
    return 0
