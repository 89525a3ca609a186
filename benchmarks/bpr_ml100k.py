"""Native BPR-MF on MovieLens-100K: choose settings on validation carved from train, then score the test once.

Protocol: ``make_eval_split(load_movielens_100k(), test_size=0.2, seed=123, relevance=4.0)`` (Cornac's
split); validation = ``holdout_entries(train, 0.1, seed=0)``; metrics by ``evaluate_model``.

Usage::

    # grid over settings, early stopping on validation (the test split is not read)
    python benchmarks/bpr_ml100k.py search '{"dim": [64, 128], "lr": [0.02, 0.05], "reg": [0.02, 0.04]}'
    # each JSON object: a TrainConfig (+ "search": true for fit_with_early_stopping), scored on test
    python benchmarks/bpr_ml100k.py test '{"dim": 64, "lr": 0.02, "reg": 0.02, "search": true, "seed": 1}'
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

from mmrec_fast.data import load_movielens_100k
from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.models import BPRMF, TrainConfig
from mmrec_fast.pipeline import make_eval_split
from mmrec_fast.pipeline.training import fit_with_early_stopping, holdout_entries

COLUMNS = ("ndcg@10", "precision@10", "recall@10", "map", "auc")


def search(data, train, grid: dict, max_epochs: int) -> None:
    fit_part, val_part = holdout_entries(train, 0.1, 0)
    keys = sorted(grid)
    rows = []
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values))
        config = TrainConfig(**{"epochs": max_epochs, "eval_every": 5, "patience": 6, "progress": False, **params})
        started = time.perf_counter()
        model = BPRMF(data.n_users, data.n_items, config).fit(fit_part, validation=val_part)
        best = next(e for e in model.history if e.get("best"))
        rows.append((best["val_ndcg@10"], best["epoch"], params))
        print(
            f"val NDCG@10 {best['val_ndcg@10']:.4f} at epoch {best['epoch']:4d} {params} "
            f"({time.perf_counter() - started:.1f} s)",
            flush=True,
        )
    best = max(rows, key=lambda r: r[0])
    print(f"best: val NDCG@10 {best[0]:.4f} at epoch {best[1]} with {best[2]}")


def test(data, split, specs) -> None:
    for spec in specs:
        params = json.loads(spec)
        early = params.pop("search", False)
        config = TrainConfig(**{"progress": False, **params})
        started = time.perf_counter()
        if early:
            model = fit_with_early_stopping(lambda c: BPRMF(data.n_users, data.n_items, c), split.train_matrix, config)
        else:
            model = BPRMF(data.n_users, data.n_items, config).fit(split.train_matrix)
        seconds = time.perf_counter() - started
        metrics = evaluate_model(model, split.positives, exclude=split.exclude, ks=(10,))
        cells = " ".join(f"{c} {metrics[c]:.4f}" for c in COLUMNS)
        print(f"{spec}: {len(model.history)} epochs, {seconds:.1f} s; {cells}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["search", "test"])
    parser.add_argument("specs", nargs="+", help="search: one JSON grid; test: JSON TrainConfig objects")
    parser.add_argument("--max-epochs", type=int, default=400, help="search: epoch bound per setting")
    args = parser.parse_args(argv)
    data = load_movielens_100k()
    split = make_eval_split(data, test_size=0.2, seed=123, relevance=4.0)
    if args.mode == "search":
        search(data, split.train_matrix, json.loads(args.specs[0]), args.max_epochs)
    else:
        test(data, split, args.specs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
