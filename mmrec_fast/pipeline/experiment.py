"""The whole pipeline on one data set: split -> text features -> models -> metrics -> lists.

The models by default: EASE, iALS, BPR-MF, the hybrid and content profiles (:data:`MODELS`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..data import Interactions
from ..evaluation import evaluate_model
from ..models import Recommender, TrainConfig, save_model
from ..recommend import recommend
from .movielens import item_texts, item_titles, text_features
from .protocol import EvalSplit, make_eval_split
from .training import CONTENT_KINDS, train_model

logger = logging.getLogger(__name__)

__all__ = ["ExperimentResult", "run_experiment", "format_table", "default_hybrid_config"]

#: What the demo trains by default: the strongest models, the BPR baseline and the text-aware ones
#: (``pipeline.MODEL_KINDS`` lists every kind; ``models=`` picks any of them).
MODELS = ("ease", "ials", "bpr", "hybrid", "content")


def default_hybrid_config(config: TrainConfig) -> TrainConfig:
    """The hybrid's training settings: ``config`` with the softmax loss over the catalogue.

    Chosen on the validation split (10% of MovieLens-100K's training entries; the test split is never
    used): with the softmax loss the hybrid's validation NDCG@10 was 0.173 against 0.167 with the BPR
    loss (sampled softmax with 512 negatives: 0.162). ``benchmarks/movielens_vs_cornac.py`` also
    reports the ablations (hybrid with BPR loss; MF with softmax loss) so the effect of the text is
    separated from the effect of the loss.
    """
    return replace(config, loss="softmax")


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` produced."""

    split: EvalSplit
    models: dict[str, Recommender]
    metrics: dict[str, dict]
    eval_seconds: dict[str, float]
    train_seconds: dict[str, float]
    outputs: dict[str, Path] = field(default_factory=dict)


def format_table(metrics: dict[str, dict], columns) -> str:
    """A plain-text table: one row per model, one column per metric key."""
    head = f"{'model':<10}" + "".join(f"{c:>14}" for c in columns)
    rows = [head, "-" * len(head)]
    for name, values in metrics.items():
        rows.append(f"{name:<10}" + "".join(f"{values.get(c, float('nan')):>14.4f}" for c in columns))
    return "\n".join(rows)


def run_experiment(
    data: Interactions,
    *,
    models=MODELS,
    config: TrainConfig | None = None,
    hybrid_config: TrainConfig | None = None,
    ks=(5, 10, 20),
    test_size: float = 0.2,
    seed: int = 123,
    relevance: float | None = 4.0,
    out_dir=None,
    list_k: int = 10,
    show_users: int = 3,
    device: str = "cpu",
    progress: bool = True,
    log=None,
) -> ExperimentResult:
    """Train and evaluate the requested models on ``data`` under the Cornac-compatible protocol.

    Parameters
    ----------
    data : Interactions
        Interaction log with item side information (titles/genres) for the text features.
    models : sequence of str
        Kinds of :data:`mmrec_fast.pipeline.MODEL_KINDS` to train (default :data:`MODELS`).
    config, hybrid_config : TrainConfig, optional
        Training settings of BPR-MF (default ``TrainConfig()``, BPR loss) and of the hybrid (default
        :func:`default_hybrid_config` of ``config``: the same with the softmax loss).
    ks : sequence of int
        Cut-offs of the metric table.
    test_size, seed, relevance
        The split (see :func:`make_eval_split`).
    out_dir : path, optional
        Where models, metrics, lists and plots are written (nothing is written if None).
    list_k, show_users : int
        Length of the written recommendation lists; number of users whose lists are printed.
    device : str
        Torch device for the encoder and training.
    progress : bool
        Progress bars.
    log : callable, optional
        Where progress messages go (default: this module's logger at INFO level; the CLI passes
        ``print``).
    """
    if log is None:
        log = logger.info
    unknown = sorted(set(models) - set(MODELS))
    if unknown or not models:
        raise ValueError(f"models must be a non-empty subset of {MODELS}, got {list(models)}")
    config = config or TrainConfig(device=device, progress=progress)
    hybrid_config = hybrid_config or default_hybrid_config(config)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)

    split = make_eval_split(data, test_size=test_size, seed=seed, relevance=relevance)
    log(
        f"split: {len(split.train)} train / {len(split.test)} test rows, "
        f"{int((np.diff(split.positives.indptr) > 0).sum())} users with relevant test items"
    )
    features = None
    if set(CONTENT_KINDS) & set(models):
        started = time.perf_counter()
        features = text_features(
            item_texts(data), cache_dir=None if out is None else out / "cache", device=device, progress=progress
        )
        log(
            f"text features: {features.shape[0]} items x {features.shape[1]} dims "
            f"(all-MiniLM-L6-v2) in {time.perf_counter() - started:.1f} s"
        )
    blocks = None if features is None else {"text": (0, features.shape[1])}

    trained: dict[str, Recommender] = {}
    train_seconds: dict[str, float] = {}
    for name in models:
        started = time.perf_counter()
        model = train_model(
            name,
            data.n_users,
            data.n_items,
            split.train_ratings,  # rating values: EASE / iALS confidences (0/1 without ratings)
            hybrid_config if name == "hybrid" else config,
            features=features,
            feature_blocks=blocks,
            relevance=relevance if split.train.ratings is not None else None,
        )
        train_seconds[name] = time.perf_counter() - started
        epochs = len(getattr(model, "history", []))
        log(f"trained {name}: {train_seconds[name]:.1f} s" + (f", {epochs} epochs" if epochs else ""))
        trained[name] = model

    metrics, eval_seconds = {}, {}
    for name, model in trained.items():
        started = time.perf_counter()
        metrics[name] = evaluate_model(model, split.positives, exclude=split.exclude, ks=ks)
        eval_seconds[name] = time.perf_counter() - started
    columns = [f"{m}@{k}" for k in ks for m in ("precision", "recall", "f1", "ndcg")] + ["map", "mrr", "auc"]
    log("\n" + format_table(metrics, columns))
    log(
        "full-catalogue evaluation (ranking + metrics): " + ", ".join(f"{n} {s:.2f} s" for n, s in eval_seconds.items())
    )

    result = ExperimentResult(split, trained, metrics, eval_seconds, train_seconds)
    titles = item_titles(data)
    show = trained.get("hybrid") or next(iter(trained.values()))
    recs = recommend(show, None, list_k, exclude=split.exclude, history=split.train_matrix)
    for row in range(min(show_users, len(recs.users))):
        uid = data.user_map.decode(recs.users[row : row + 1])[0]
        log(f"\nuser {uid} -- top {min(5, list_k)} ({show.kind}); p = probability over the eligible catalogue")
        for rank in range(min(5, list_k)):
            code = recs.items[row, rank]
            parts = ", ".join(f"{b} {v[row, rank]:+.2f}" for b, v in recs.contributions.items())
            because = "; ".join(titles[s] for s in recs.similar[row, rank] if s >= 0)
            log(
                f"  {rank + 1}. {titles[code]:<45} p={recs.probs[row, rank]:.4f} score={recs.scores[row, rank]:.2f} "
                f"[{parts}] because you liked: {because}"
            )
    if out is not None:
        from .plots import plot_metrics_at_k, plot_training

        for name, model in trained.items():
            result.outputs[f"model_{name}"] = save_model(
                model,
                out / "models" / name,
                user_map=data.user_map,
                item_map=data.item_map,
                metadata={"data": data.source},
            )
        options = {"user_map": data.user_map, "item_map": data.item_map, "item_labels": titles}
        for suffix in ("csv", "parquet", "jsonl"):
            result.outputs[f"lists_{suffix}"] = recs.write(out / f"recommendations.{suffix}", **options)
        (out / "metrics.json").write_text(
            json.dumps(
                {
                    "metrics": metrics,
                    "eval_seconds": eval_seconds,
                    "train_seconds": train_seconds,
                    "protocol": {"test_size": test_size, "seed": seed, "relevance": relevance},
                },
                indent=2,
            )
        )
        result.outputs["metrics"] = out / "metrics.json"
        result.outputs["plot_metrics"] = plot_metrics_at_k(metrics, ks, out / "metrics_at_k.png")
        histories = {
            n: getattr(m, "search_history", []) for n, m in trained.items() if getattr(m, "search_history", None)
        }
        if histories:
            result.outputs["plot_training"] = plot_training(histories, out / "training.png")
        log(
            f"\nwrote {out}/: models/, recommendations.(csv|parquet|jsonl), metrics.json, "
            + ", ".join(p.name for k, p in result.outputs.items() if k.startswith("plot"))
        )
    return result
