"""Tune EASE and iALS on a validation split carved from MovieLens-100K's TRAIN part, then score the test split.

Protocol (the README's / issue 16's): ``make_eval_split(load_movielens_100k(), test_size=0.2, seed=123,
relevance=4.0)``. Validation: 20% of the training (user, item, rating) entries held out with
:func:`mmrec_fast.pipeline.training.holdout_entries` (seeded); held-out entries rated >= 4 are the
validation positives, each user's remaining training items are excluded -- the test protocol in
miniature. Every setting is chosen on validation only; the test split is read once, after the choice,
to report the chosen settings (refit on all of train).

Usage::

    python benchmarks/tune_ease_ials.py [--trials 30] [--refine 15] [--seed 0] [--kinds mostpop ease ials] [--json PATH]

The iALS ranges were narrowed after a first, wider run (d 64-256, alpha0 0.003-1, reg 3e-4-0.3, nu 0-1,
binary only) by its validation scores; ratings as confidences (``use_values``) were added after EASE
gained from them on validation.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import scipy.sparse as sp

from mmrec_fast.data import load_movielens_100k
from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.models import EASE, IALS, MostPop
from mmrec_fast.pipeline import make_eval_split
from mmrec_fast.pipeline.training import holdout_entries

METRICS = ("ndcg@10", "precision@10", "recall@10", "map", "auc")


def validation_split(split, seed: int):
    """(fit ratings CSR, validation positives, validation exclude) carved from the training part only."""
    ratings = split.train.to_csr("ratings", duplicates="last")
    fit, held = holdout_entries(ratings, 0.2, seed)
    positives = held.copy()
    positives.data = (positives.data >= 4.0).astype(np.float32)
    positives.eliminate_zeros()
    # Items with no fit interaction are outside the fit catalogue: excluded, like the test protocol does.
    unseen = np.flatnonzero(np.diff(sp.csc_matrix(fit).indptr) == 0)
    outside = sp.csr_matrix(
        (
            np.ones(fit.shape[0] * unseen.size, np.float32),
            (np.repeat(np.arange(fit.shape[0]), unseen.size), np.tile(unseen, fit.shape[0])),
        ),
        shape=fit.shape,
    )
    exclude = ((fit != 0).astype(np.float32) + outside).tocsr()
    exclude.data[:] = 1.0
    return fit, positives, exclude


def score(model, positives, exclude) -> dict:
    result = evaluate_model(model, positives, exclude=exclude, ks=(10,))
    return {m: round(float(result[m]), 4) for m in METRICS}


def make(kind: str, shape, params: dict):
    if kind == "ease":
        return EASE(*shape, **params)
    if kind == "ials":
        return IALS(*shape, **params)
    return MostPop(*shape, **params)


def fit_on(kind, shape, params, ratings):
    matrix = ratings.copy()
    if not params.get("use_values", False):
        matrix.data[:] = 1.0
    return make(kind, shape, params).fit(matrix)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=30, help="random iALS settings tried")
    parser.add_argument(
        "--refine",
        type=int,
        default=15,
        help="then this many iALS settings drawn around the best so far (each knob x/÷ up to 2)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kinds", nargs="+", default=["mostpop", "ease", "ials"], choices=["mostpop", "ease", "ials"])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    data = load_movielens_100k()
    split = make_eval_split(data, test_size=0.2, seed=123, relevance=4.0)
    shape = split.train_matrix.shape
    fit, val_pos, val_exclude = validation_split(split, args.seed)
    rng = np.random.default_rng(args.seed)

    candidates = {"mostpop": [{}]}
    candidates["ease"] = [
        {"reg": r, "use_values": v, "positive_only": p}
        for v, p in itertools.product((False, True), (False, True))
        for r in (
            (50, 100, 200, 300, 500, 700, 1000, 1500, 2000)
            if not v
            else (500, 1000, 2000, 3000, 5000, 7000, 10000, 15000)
        )
    ]
    # Random search over Rendle et al.'s knobs, ranges narrowed by a first wider search (see docs).
    candidates["ials"] = [
        {
            "dim": int(rng.choice([128, 256])),
            "alpha0": float(10 ** rng.uniform(-1.5, 0)),
            "reg": float(10 ** rng.uniform(-2, 0)),
            "nu": float(rng.choice([0.5, 1.0])),
            "use_values": bool(rng.random() < 0.5),
            "epochs": 20,
            "seed": args.seed,
        }
        for _ in range(args.trials)
    ]
    report = {}
    for kind in args.kinds:
        grid = candidates[kind]
        trials = []
        for params in grid:
            started = time.perf_counter()
            model = fit_on(kind, shape, params, fit)
            val = score(model, val_pos, val_exclude)
            trials.append({"params": params, "val": val, "seconds": round(time.perf_counter() - started, 2)})
            print(kind, params, "val", val["ndcg@10"], f"{trials[-1]['seconds']}s", flush=True)
        if kind == "ials":
            for _ in range(args.refine):
                best = max(trials, key=lambda t: t["val"]["ndcg@10"])["params"]
                params = {**best, **{knob: float(best[knob] * 2 ** rng.uniform(-1, 1)) for knob in ("alpha0", "reg")}}
                started = time.perf_counter()
                val = score(fit_on(kind, shape, params, fit), val_pos, val_exclude)
                trials.append({"params": params, "val": val, "seconds": round(time.perf_counter() - started, 2)})
                print(kind, "refine", params, "val", val["ndcg@10"], f"{trials[-1]['seconds']}s", flush=True)
        best = max(trials, key=lambda t: t["val"]["ndcg@10"])
        ratings = split.train.to_csr("ratings", duplicates="last")
        started = time.perf_counter()
        final = fit_on(kind, shape, best["params"], ratings)
        seconds = time.perf_counter() - started
        test = score(final, split.positives, split.exclude)
        report[kind] = {
            "best_params": best["params"],
            "val": best["val"],
            "test": test,
            "refit_seconds": round(seconds, 2),
            "trials": trials,
        }
        print(
            f"== {kind}: chosen on validation {best['params']} val {best['val']['ndcg@10']} -> TEST {test}", flush=True
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(report, handle, indent=1)


if __name__ == "__main__":
    main()
