"""Train a factor model the honest way: pick the epoch count on a validation split carved from train,
then refit on all of train for that many epochs (the test split is never looked at)."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

import numpy as np
import scipy.sparse as sp

from ..models import BPRMF, ContentProfile, FactorModel, HybridMF, Recommender, TrainConfig

__all__ = ["holdout_entries", "fit_with_early_stopping", "train_model", "MODEL_KINDS"]

#: What :func:`train_model` builds.
MODEL_KINDS = ("bpr", "hybrid", "content")


def holdout_entries(matrix: sp.spmatrix, fraction: float, seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Split the stored entries of ``matrix`` at random into (kept, held out), seeded."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction!r}")
    coo = sp.coo_matrix(matrix)
    held = np.random.default_rng(seed).random(coo.nnz) < fraction
    def part(mask):
        out = sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=coo.shape)
        out.sort_indices()
        return out
    return part(~held), part(held)


def fit_with_early_stopping(make_model: Callable[[TrainConfig], FactorModel], train: sp.csr_matrix,
                            config: TrainConfig, *, val_fraction: float = 0.1) -> FactorModel:
    """Choose the number of epochs by early stopping on held-out training entries, then refit.

    Parameters
    ----------
    make_model : callable
        ``make_model(config) -> FactorModel`` (unfitted), e.g. ``lambda c: BPRMF(n_users, n_items, c)``.
    train : csr
        All training interactions.
    config : TrainConfig
        ``epochs`` is the upper bound of the search; ``seed`` seeds the validation draw too.
    val_fraction : float
        Share of training entries held out for the search.

    Returns
    -------
    FactorModel
        Refit on all of ``train`` for the best epoch count; ``model.search_history`` holds the
        search run's per-epoch history (with ``val_ndcg@10``), ``model.history`` the refit's.
    """
    fit_part, val_part = holdout_entries(train, val_fraction, config.seed)
    search = make_model(config).fit(fit_part, validation=val_part)
    best = next((e["epoch"] for e in search.history if e.get("best")), len(search.history))
    final = make_model(replace(config, epochs=max(1, best))).fit(train)
    final.search_history = search.history
    return final


def train_model(kind: str, n_users: int, n_items: int, train: sp.csr_matrix, config: TrainConfig | None = None, *,
                features=None, feature_blocks=None) -> Recommender:
    """Build and fit one model of ``kind`` the pipeline's way (one place for the demo, CLI and benchmark).

    ``"bpr"`` and ``"hybrid"`` go through :func:`fit_with_early_stopping` with ``config``; ``"content"``
    is closed-form. ``"hybrid"`` and ``"content"`` need ``features`` (array or ``encoders.fuse`` output).
    """
    if kind not in MODEL_KINDS:
        raise ValueError(f"kind must be one of {MODEL_KINDS}, got {kind!r}")
    if kind != "bpr" and features is None:
        raise ValueError(f"features are required for the {kind!r} model")
    if kind == "content":
        return ContentProfile(features, feature_blocks=feature_blocks).fit(train)
    config = config or TrainConfig()
    if kind == "bpr":
        return fit_with_early_stopping(lambda c: BPRMF(n_users, n_items, c), train, config)
    return fit_with_early_stopping(
        lambda c: HybridMF(n_users, n_items, features, c, feature_blocks=feature_blocks), train, config)
