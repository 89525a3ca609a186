"""Recommendation quality: every model x protocol (warm, cold items, cold users) x seeds, one evaluator.

Protocols (all on MovieLens-100K, ratings >= 4 relevant, full-catalogue ranking by the engine, metrics by
:func:`mmrec_fast.evaluation.evaluate_model`):

- **warm**: the README's Cornac protocol, ``make_eval_split(data, test_size=0.2, seed=123, relevance=4.0)``;
  the seeds vary the models' training only.
- **cold items**: :func:`mmrec_fast.pipeline.cold_item_split` holds out 20% of the items with all their
  interactions (seeded); the users who rated them >= 4 rank (a) the held-out items only, (b) the whole
  catalogue minus their training items, where we also report where cold items land. A model needs a
  content path (``item_vectors_from``, or content profiles) to take part; ``random`` is the exact
  expected NDCG@10 of a random ranking.
- **cold users**: :func:`mmrec_fast.pipeline.cold_user_split` holds out 10% of the users; half of each
  one's interactions are folded in without retraining (``fold_in``), the other half, rated >= 4, are the
  targets; the same users scored by a model retrained with those histories is the reference
  (``fold-in / retrain`` ratio).

Every model is built by the one front door, :func:`mmrec_fast.pipeline.train_model`, with its defaults
(``DEFAULT_PARAMS``: chosen by ``--search`` on a validation split carved from the warm TRAINING part,
relevance >= 4 as in the test; the test split is never read by a search). Cornac's EASE and BPR (when
Cornac is installed) are tuned the same way -- same validation split, same evaluator -- then refit on
all of train; their item/user factors are scored by our engine under the same protocol.

Usage::

    python benchmarks/quality.py [--seeds 0 1 2] [--search [--search-seeds 0 1 2]] [--trials 12] [--quick] \
        [--out docs/benchmarks]

``--quick`` runs everything on a tiny synthetic log with random "content" (a smoke test of the script).
Cells are mean +- half range over the seeds.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # a process importing this module (the tests) keeps its environment
    for _var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):  # same BLAS kernel as the other benchmarks
        os.environ.pop(_var, None)

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from mmrec_fast.evaluation import evaluate_model  # noqa: E402
from mmrec_fast.models import (  # noqa: E402
    BPRMF,
    EASE,
    IALS,
    ContentIALS,
    ContentProfile,
    EASEIALSBlend,
    HybridMF,
    MostPop,
    Recommender,
    ScoreBlock,
)
from mmrec_fast.pipeline import (  # noqa: E402
    DEFAULT_PARAMS,
    MODEL_KINDS,
    VectorOverride,
    cold_item_landing,
    cold_item_split,
    cold_item_vectors,
    cold_user_split,
    fold_in_users,
    random_ndcg,
    train_model,
    tune,
    validation_split,
)
from mmrec_fast.pipeline.tuning import search_points  # noqa: E402

METRICS = ("ndcg@10", "precision@10", "recall@10", "map", "auc")
RELEVANCE = 4.0
#: Search budgets (trials) per kind for --search; the hybrid trains with torch and costs the most.
SEARCH_TRIALS = {
    "hybrid": 4,
    "mostpop": 2,
    "content": 1,
    "ials": 20,
    "ials-content": 20,
    "bpr": 10,
    "ease": 10,
    "ease-ials": 29,
}
CORNAC_SPACES = {
    "cornac-ease": {"lamb": [100.0, 250.0, 500.0, 1000.0, 2000.0, 4000.0], "posB": [True, False]},
    "cornac-bpr": {
        "k": [50, 100, 200],
        "learning_rate": [0.005, 0.01, 0.05],
        "lambda_reg": [0.001, 0.01, 0.03],
        "max_iter": [100, 200, 400],
    },
}
CORNAC_DEFAULTS = {
    "cornac-ease": {"lamb": 1000.0, "posB": True},
    "cornac-bpr": {"k": 100, "learning_rate": 0.01, "lambda_reg": 0.01, "max_iter": 200},
}


KIND_CLASSES = {
    "bpr": BPRMF,
    "hybrid": HybridMF,
    "content": ContentProfile,
    "ease": EASE,
    "ials": IALS,
    "ials-content": ContentIALS,
    "ease-ials": EASEIALSBlend,
    "mostpop": MostPop,
}


def has_content_path(kind: str) -> bool:
    """Can the kind score an item from its content alone (checked before minutes of training)?"""
    cls = KIND_CLASSES[kind]
    return hasattr(cls, "item_vectors_from") or issubclass(cls, ContentProfile)


def has_fold_in(kind: str) -> bool:
    cls = KIND_CLASSES[kind]
    return hasattr(cls, "fold_in") or issubclass(cls, ContentProfile)


class FixedVectors(Recommender):
    """Vectors from elsewhere (Cornac's models) behind our model interface."""

    def __init__(self, kind, users, items, blocks):
        self.kind, self._u, self._i, self._b = kind, users, items, blocks

    n_users = property(lambda self: self._u.shape[0])
    n_items = property(lambda self: self._i.shape[0])

    def user_vectors(self):
        return self._u

    def item_vectors(self):
        return self._i

    def blocks(self):
        return self._b


# ------------------------------------------------------------------------------------------ data
def load(quick: bool):
    """(ratings CSR of the whole log, warm EvalSplit, item features, description)."""
    from mmrec_fast.data import IdMap, Interactions, load_movielens_100k
    from mmrec_fast.pipeline import item_texts, make_eval_split, text_features

    if quick:
        rng = np.random.default_rng(0)
        n_users, n_items, dim = 80, 60, 8
        taste = rng.normal(size=(n_users, dim))
        features = rng.normal(size=(n_items, dim)).astype(np.float32)
        logits = taste @ features.T
        mask = logits + rng.normal(size=logits.shape) > 1.0
        mask[np.arange(n_users), np.argmax(logits, axis=1)] = True
        mask[np.argmax(logits, axis=0), np.arange(n_items)] = True
        users, items = np.nonzero(mask)
        ratings = np.clip(np.round(3 + logits[users, items] / 2), 1, 5).astype(np.float32)
        data = Interactions(
            users=users.astype(np.int64),
            items=items.astype(np.int64),
            ratings=ratings,
            timestamps=None,
            user_map=IdMap(np.arange(n_users)),
            item_map=IdMap(np.arange(n_items)),
        )
        split = make_eval_split(data, test_size=0.2, seed=123, relevance=RELEVANCE)
        return (
            data.to_csr("ratings"),
            split,
            features / np.linalg.norm(features, axis=1, keepdims=True),
            "synthetic quick log",
        )
    data = load_movielens_100k()
    split = make_eval_split(data, test_size=0.2, seed=123, relevance=RELEVANCE)
    features = text_features(item_texts(data), cache_dir=Path.home() / ".cache" / "mmrec_fast_quality", progress=False)
    return data.to_csr("ratings"), split, features, "MovieLens-100K"


def warm_ratings(split) -> sp.csr_matrix:
    return split.train.to_csr("ratings", duplicates="last")


# ------------------------------------------------------------------------------------------ cornac
def cornac_fit(kind: str, ratings: sp.csr_matrix, params: dict, seed: int) -> Recommender:
    """Fit Cornac's model on ``ratings`` (our codes as its raw ids) and hand its vectors to our engine."""
    from cornac.data import Dataset
    from cornac.models import BPR, EASE

    coo = ratings.tocoo()
    triples = list(zip(coo.row.astype(str), coo.col.astype(str), coo.data.astype(float)))
    data = Dataset.from_uir(triples, seed=seed)
    u_codes = np.array([int(x) for x in data.uid_map], dtype=np.int64)
    u_idx = np.fromiter(data.uid_map.values(), dtype=np.int64)
    i_codes = np.array([int(x) for x in data.iid_map], dtype=np.int64)
    i_idx = np.fromiter(data.iid_map.values(), dtype=np.int64)
    n_users, n_items = ratings.shape
    if kind == "cornac-ease":
        model = EASE(verbose=False, seed=seed, **params)
        model.fit(data)
        # Cornac scores u with X_u . B (X: its training rating matrix): user vectors = X rows, items = B^T.
        users = np.zeros((n_users, n_items), np.float32)
        items = np.zeros((n_items, n_items), np.float32)
        x = data.matrix.toarray().astype(np.float32)
        users[np.ix_(u_codes, i_codes)] = x[np.ix_(u_idx, i_idx)]
        items[np.ix_(i_codes, i_codes)] = np.asarray(model.B, dtype=np.float32).T[np.ix_(i_idx, i_idx)]
        return FixedVectors(kind, users, items, [ScoreBlock("id", 0, n_items)])
    model = BPR(verbose=False, seed=seed, **params)
    model.fit(data)
    k = model.u_factors.shape[1]
    users = np.zeros((n_users, k + 1), np.float32)
    items = np.zeros((n_items, k + 1), np.float32)
    users[u_codes, :k] = model.u_factors[u_idx]
    users[:, k] = 1.0
    items[i_codes, :k] = model.i_factors[i_idx]
    items[i_codes, k] = model.i_biases[i_idx]
    return FixedVectors(kind, users, items, [ScoreBlock("id", 0, k), ScoreBlock("bias", k, k + 1)])


def cornac_tune(kind: str, ratings: sp.csr_matrix, trials: int, seed: int = 0) -> tuple[dict, list]:
    """Cornac's settings chosen exactly like ours: same validation split, same evaluator, defaults first."""
    # The fit part keeps the rating values: Cornac's EASE learns from them, as in Cornac.
    fit_ratings, val, exclude = validation_split(ratings, 0.1, seed, relevance=RELEVANCE)
    log = []
    for params in search_points(CORNAC_SPACES[kind], CORNAC_DEFAULTS[kind], trials, seed):
        started = time.perf_counter()
        model = cornac_fit(kind, fit_ratings, params, seed)
        score = evaluate_model(model, val, exclude=exclude, ks=(10,), metrics=("ndcg",))["ndcg@10"]
        log.append({"params": params, "score": float(score), "seconds": time.perf_counter() - started})
        print(f"  tune {kind}: {params} -> val ndcg@10 {score:.4f}", flush=True)
    best = max(log, key=lambda t: t["score"])
    return dict(best["params"]), log


def search(kind: str, ratings: sp.csr_matrix, features, seeds, default_trials: int = 12) -> dict:
    """tune() on the validation split carved from ``ratings`` (warm TRAIN) with each seed; best mean score wins."""
    runs = []
    for seed in seeds:
        best, trials = tune(
            kind,
            ratings,
            budget=SEARCH_TRIALS.get(kind, default_trials),
            seed=seed,
            features=features,
            feature_blocks={"text": (0, features.shape[1])},
            relevance=RELEVANCE,
            log=print,
        )
        runs.append(trials)
    if len(runs) == 1:
        top = max(runs[0], key=lambda t: (t.score, -t.index))
        return {"best": dict(top.chosen), "best_score": top.score, "trials": [t.to_dict() for t in runs[0]]}
    # Settings tried under every seed (the grid is the same; the order is seeded), scored by their mean.
    key = lambda t: json.dumps(t.chosen, sort_keys=True)  # noqa: E731
    scores: dict[str, list[float]] = {}
    for trials in runs:
        for t in trials:
            scores.setdefault(key(t), []).append(t.score)
    common = {k: float(np.mean(v)) for k, v in scores.items() if len(v) == len(seeds)}
    if not common:
        raise ValueError(f"{kind}: no setting was tried under every search seed; raise its SEARCH_TRIALS")
    best = max(common, key=common.get)
    return {
        "best": json.loads(best),
        "best_score": common[best],
        "seeds": list(seeds),
        "mean_scores": dict(sorted(common.items(), key=lambda kv: -kv[1])),
        "trials": [[t.to_dict() for t in trials] for trials in runs],
    }


# ------------------------------------------------------------------------------------------ protocols
def pick(metrics: dict) -> dict:
    return {m: float(metrics[m]) for m in METRICS}


def fit(kind, ratings: sp.csr_matrix, features, seed, params=None):
    n_users, n_items = ratings.shape
    return train_model(
        kind,
        n_users,
        n_items,
        ratings,
        features=features,
        feature_blocks={"text": (0, features.shape[1])},
        params=params,
        seed=seed,
        relevance=RELEVANCE,
    )


def run_warm(kinds, split, features, seeds, cornac_params) -> dict:
    ratings = warm_ratings(split)
    out = {}
    for kind in kinds:
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            if kind.startswith("cornac-"):
                model = cornac_fit(kind, ratings, cornac_params[kind], seed)
            else:
                model = fit(kind, ratings, features, seed)
            seconds = time.perf_counter() - started
            metrics = pick(evaluate_model(model, split.positives, exclude=split.exclude, ks=(10,)))
            runs.append({**metrics, "train_seconds": seconds})
            print(f"warm {kind:<13} seed {seed}: ndcg@10 {metrics['ndcg@10']:.4f} ({seconds:.1f} s)", flush=True)
        out[kind] = runs
    return out


def run_cold_items(kinds, ratings, features, seeds) -> dict:
    out = {"random": []}
    for seed in seeds:
        s = cold_item_split(ratings, fraction=0.2, seed=seed, relevance=RELEVANCE)
        out["random"].append(
            {
                "among_cold": {"ndcg@10": random_ndcg(s.positives, s.exclude_among_cold, ratings.shape[1])},
                "catalogue": {"ndcg@10": random_ndcg(s.positives, s.exclude_catalogue, ratings.shape[1])},
            }
        )
        warm = ratings.multiply(s.train).tocsr()
        for kind in kinds:
            if not has_content_path(kind):
                out.setdefault(kind, []).append({"skipped": f"{KIND_CLASSES[kind].__name__} has no content path"})
                continue
            model = fit(kind, warm, features, seed)
            vectors = cold_item_vectors(model, features, s.cold_items)
            scored = VectorOverride(model, item_rows=s.cold_items, item_vectors=vectors)
            entry = {
                "among_cold": pick(evaluate_model(scored, s.positives, exclude=s.exclude_among_cold, ks=(10,))),
                "catalogue": pick(evaluate_model(scored, s.positives, exclude=s.exclude_catalogue, ks=(10,))),
                "landing": cold_item_landing(scored, s),
            }
            out.setdefault(kind, []).append(entry)
            print(
                f"cold items {kind:<13} seed {seed}: among cold ndcg@10 {entry['among_cold']['ndcg@10']:.4f}, "
                f"catalogue {entry['catalogue']['ndcg@10']:.4f}, cold share of top-10 "
                f"{entry['landing']['cold_share@10']:.3f}",
                flush=True,
            )
    return out


def run_cold_users(kinds, ratings, features, seeds) -> dict:
    out = {}
    for seed in seeds:
        s = cold_user_split(ratings, fraction=0.1, history_fraction=0.5, seed=seed, relevance=RELEVANCE)
        warm = ratings.multiply(s.train).tocsr()
        full = ratings.multiply(s.retrain).tocsr()
        for kind in kinds:
            if not has_fold_in(kind):
                out.setdefault(kind, []).append({"skipped": f"{KIND_CLASSES[kind].__name__} has no fold-in"})
                continue
            model = fit(kind, warm, features, seed)
            # The history with its ratings: models that learn from values fold in from them too.
            vectors = fold_in_users(model, ratings.multiply(s.history).tocsr(), s.cold_users)
            folded = VectorOverride(model, user_rows=s.cold_users, user_vectors=vectors)
            fold_metrics = pick(evaluate_model(folded, s.positives, exclude=s.exclude, ks=(10,)))
            retrained = fit(kind, full, features, seed)
            retrain_metrics = pick(evaluate_model(retrained, s.positives, exclude=s.exclude, ks=(10,)))
            ratio = fold_metrics["ndcg@10"] / retrain_metrics["ndcg@10"] if retrain_metrics["ndcg@10"] else float("nan")
            out.setdefault(kind, []).append(
                {"fold_in": fold_metrics, "retrain": retrain_metrics, "ratio_ndcg@10": ratio}
            )
            print(
                f"cold users {kind:<13} seed {seed}: fold-in ndcg@10 {fold_metrics['ndcg@10']:.4f}, retrain "
                f"{retrain_metrics['ndcg@10']:.4f} (ratio {ratio:.3f})",
                flush=True,
            )
    return out


# ------------------------------------------------------------------------------------------ report
def cell(values) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if len(values) == 0:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{values.mean():.4f} ± {(values.max() - values.min()) / 2:.4f}"


def mean(values) -> float:
    return float(np.mean(values)) if len(values) else float("nan")


def markdown(report: dict) -> str:
    lines = [
        f"# Recommendation quality ({report['data']})",
        "",
        f"Command: `{report['command']}` on {report['machine']}; {report['when']}. Cells: mean ± half "
        f"range over seeds {report['seeds']}. Metrics by `evaluate_model` (full-catalogue ranking, "
        "ratings ≥ 4 relevant). Settings: `train_model` defaults (`DEFAULT_PARAMS`) for ours; Cornac's "
        "tuned on the same validation split (carved from the warm training part) with the same evaluator.",
        "",
        "## Warm (Cornac RatioSplit 0.2, seed 123)",
        "",
        "| model | " + " | ".join(METRICS) + " | train s |",
        "|---|" + "---:|" * (len(METRICS) + 1),
    ]
    for kind, runs in report["warm"].items():
        lines.append(
            f"| {kind} | "
            + " | ".join(cell([r[m] for r in runs]) for m in METRICS)
            + f" | {mean([r['train_seconds'] for r in runs]):.1f} |"
        )
    lines += [
        "",
        "## Cold items (20% of items held out with all their interactions)",
        "",
        "| model | NDCG@10 among cold | P@10 among cold | NDCG@10 whole catalogue | cold share of top-10 "
        "| median percentile of cold targets | targets in top-10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, runs in report["cold_items"].items():
        if any("skipped" in r for r in runs):
            lines.append(f"| {kind} | n/a (no content path) | | | | | |")
            continue
        land = [r.get("landing", {}) for r in runs]
        lines.append(
            f"| {kind} | {cell([r['among_cold']['ndcg@10'] for r in runs])} | "
            f"{cell([r['among_cold'].get('precision@10') for r in runs])} | "
            f"{cell([r['catalogue']['ndcg@10'] for r in runs])} | "
            f"{cell([x.get('cold_share@10') for x in land])} | "
            f"{cell([x.get('median_percentile') for x in land])} | {cell([x.get('in_top@10') for x in land])} |"
        )
    lines += [
        "",
        "## Cold users (10% of users; half of each one's interactions folded in, the rest the targets)",
        "",
        "| model | NDCG@10 fold-in | NDCG@10 retrain | fold-in / retrain | recall@10 fold-in | recall@10 retrain |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, runs in report["cold_users"].items():
        if any("skipped" in r for r in runs):
            lines.append(f"| {kind} | n/a (no fold-in path) | | | | |")
            continue
        lines.append(
            f"| {kind} | {cell([r['fold_in']['ndcg@10'] for r in runs])} | "
            f"{cell([r['retrain']['ndcg@10'] for r in runs])} | {cell([r['ratio_ndcg@10'] for r in runs])} | "
            f"{cell([r['fold_in']['recall@10'] for r in runs])} | {cell([r['retrain']['recall@10'] for r in runs])} |"
        )
    lines += ["", "## Targets (issue 16)", ""]
    for name, value in report["targets"].items():
        lines.append(f"- {name}: {value}")
    for merged in report.get("merged", []):
        lines.append(f"- rows merged from `{merged['file']}` (`{merged['command']}`)")
    if report.get("search"):
        lines += [
            "",
            "## Validation search (`--search`)",
            "",
            "| model | best setting | val NDCG@10 (mean over search seeds) | trials | search seeds |",
            "|---|---|---:|---:|---|",
        ]
        for kind, entry in report["search"].items():
            n = sum(len(t) if isinstance(t, list) else 1 for t in entry["trials"])
            lines.append(
                f"| {kind} | `{json.dumps(entry['best'])}` | {entry['best_score']:.4f} | {n} | "
                f"{entry.get('seeds', [0])} |"
            )
    return "\n".join(lines) + "\n"


def targets(report: dict) -> dict:
    warm = {k: {m: mean([r[m] for r in runs]) for m in METRICS} for k, runs in report["warm"].items()}
    ours = {k: v for k, v in warm.items() if not k.startswith("cornac-")}
    best = max(ours, key=lambda k: ours[k]["ndcg@10"])
    factor = [k for k in ("bpr", "ials", "ials-content", "hybrid") if k in ours]
    out = {
        "warm best (ours)": f"{best} NDCG@10 {ours[best]['ndcg@10']:.4f} (target >= 0.38: "
        f"{'met' if ours[best]['ndcg@10'] >= 0.38 else 'NOT met'})"
    }
    for anchor in ("ease", "cornac-ease"):
        if anchor in warm and anchor != best:
            ok = {m: ours[best][m] >= warm[anchor][m] for m in METRICS}
            out[f"{best} >= {anchor} on every metric"] = f"{'met' if all(ok.values()) else 'NOT met'} {ok}"
    if factor:
        f = max(factor, key=lambda k: ours[k]["ndcg@10"])
        out["best factor model"] = (
            f"{f} NDCG@10 {ours[f]['ndcg@10']:.4f} (target >= 0.35: "
            f"{'met' if ours[f]['ndcg@10'] >= 0.35 else 'NOT met'})"
        )
    cold = report["cold_items"]
    if "ials-content" in cold and "content" in cold and not any("skipped" in r for r in cold["ials-content"]):
        ca = mean([r["among_cold"]["ndcg@10"] for r in cold["ials-content"]])
        cp = mean([r["among_cold"]["ndcg@10"] for r in cold["content"]])
        rnd = mean([r["among_cold"]["ndcg@10"] for r in cold["random"]])
        out["cold items: ials-content / content profile (among cold)"] = (
            f"{ca / cp:.2f}x (target >= 1.5x: {'met' if ca >= 1.5 * cp else 'NOT met'})"
        )
        out["cold items: ials-content / random (among cold)"] = (
            f"{ca / rnd:.2f}x (target >= 5x: {'met' if ca >= 5 * rnd else 'NOT met'})"
        )
    for kind, runs in report["cold_users"].items():
        if not any("skipped" in r for r in runs):
            ratio = mean([r["ratio_ndcg@10"] for r in runs])
            out[f"cold users {kind}: fold-in / retrain NDCG@10"] = (
                f"{ratio:.3f} (within 5%: {'met' if ratio >= 0.95 else 'NOT met'})"
            )
    if "ials" in warm and "ials-content" in warm:
        out["warm: ials-content vs its ID-only twin (ials) NDCG@10"] = (
            f"{warm['ials-content']['ndcg@10']:.4f} vs {warm['ials']['ndcg@10']:.4f}"
        )
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODEL_KINDS), help="our kinds to run")
    parser.add_argument("--protocols", nargs="+", default=["warm", "cold-items", "cold-users"])
    parser.add_argument(
        "--search",
        action="store_true",
        help="first search each kind's settings on validation (report them; the tables still "
        "use train_model's defaults, which is what --search is for choosing)",
    )
    parser.add_argument(
        "--search-seeds",
        dest="search_seeds",
        type=int,
        nargs="+",
        default=[0],
        help="--search on the validation split carved with each seed; the setting with the best "
        "mean validation NDCG@10 over them wins (differences between neighbouring settings "
        "are often smaller than one split's noise)",
    )
    parser.add_argument("--trials", type=int, default=12, help="search budget per kind (--search, Cornac)")
    parser.add_argument("--no-cornac", action="store_true", help="skip Cornac's EASE/BPR anchors")
    parser.add_argument("--quick", action="store_true", help="tiny synthetic log (a smoke test)")
    parser.add_argument("--out", default="benchmarks/results", help="directory for quality.json / quality.md")
    parser.add_argument("--from-json", dest="from_json", help="re-render this quality.json instead of running")
    parser.add_argument(
        "--merge",
        nargs="+",
        default=[],
        help="quality.json files of other runs (e.g. the slow hybrid alone) whose rows are added "
        "for kinds this run did not measure",
    )
    args = parser.parse_args(argv)
    unknown = sorted(set(args.models) - set(MODEL_KINDS))
    if unknown:
        parser.error(f"--models: unknown kind(s) {unknown}; known: {MODEL_KINDS}")

    if args.from_json:
        # Re-render a finished run (optionally with --merge'd rows) without training anything.
        report = json.loads(Path(args.from_json).read_text())
        return finish(report, args.merge, Path(args.out), time.perf_counter())
    started = time.perf_counter()
    ratings, split, features, name = load(args.quick)
    print(
        f"{name}: {ratings.nnz} ratings, {ratings.shape[0]} users x {ratings.shape[1]} items; "
        f"features {features.shape}",
        flush=True,
    )
    report = {
        "data": name,
        "seeds": args.seeds,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus (shared VM)",
        "command": "python benchmarks/quality.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "when": time.strftime("%Y-%m-%d"),
        "defaults": {k: DEFAULT_PARAMS[k] for k in args.models},
    }
    if args.search:
        report["search"] = {
            kind: search(kind, warm_ratings(split), features, args.search_seeds, args.trials) for kind in args.models
        }
    cornac_kinds, cornac_params = [], {}
    if not args.no_cornac and "warm" in args.protocols:
        try:
            import cornac

            report["cornac_version"] = cornac.__version__
            for kind in ("cornac-ease", "cornac-bpr"):
                best, log = cornac_tune(kind, warm_ratings(split), min(args.trials, 8) if args.quick else args.trials)
                cornac_params[kind] = best
                report.setdefault("cornac_search", {})[kind] = {"best": best, "trials": log}
                cornac_kinds.append(kind)
        except ImportError:
            print("cornac is not installed: no Cornac anchors (pip install cornac==3.0.1)")
    report["warm"] = (
        run_warm(args.models + cornac_kinds, split, features, args.seeds, cornac_params)
        if "warm" in args.protocols
        else {}
    )
    report["cold_items"] = (
        run_cold_items(args.models, ratings, features, args.seeds) if "cold-items" in args.protocols else {}
    )
    report["cold_users"] = (
        run_cold_users(args.models, ratings, features, args.seeds) if "cold-users" in args.protocols else {}
    )
    return finish(report, args.merge, Path(args.out), started)


def finish(report: dict, merge, out: Path, started: float) -> int:
    """Merge other runs' rows, check the targets, write quality.json / quality.md."""
    for path in merge:
        other = json.loads(Path(path).read_text())
        report.setdefault("merged", []).append(
            {"file": str(path), "command": other.get("command"), "seconds": other.get("seconds")}
        )
        for section in ("warm", "cold_items", "cold_users"):
            for kind, runs in other.get(section, {}).items():
                report.setdefault(section, {}).setdefault(kind, runs)
    report["targets"] = targets(report) if report.get("warm") else {}
    report.setdefault("seconds", time.perf_counter() - started)
    out.mkdir(parents=True, exist_ok=True)
    (out / "quality.json").write_text(json.dumps(report, indent=2, default=str))
    (out / "quality.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wrote {out / 'quality.json'} and {out / 'quality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
