"""Full-catalogue evaluation of a model: the engine ranks, :mod:`mmrec_fast.metrics` scores the lists."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .engine import topk
from .metrics import candidate_counts, evaluate
from .models.base import Recommender

__all__ = ["evaluate_model"]


def evaluate_model(
    model: Recommender,
    positives: sp.spmatrix,
    *,
    exclude: sp.spmatrix | None = None,
    ks=(5, 10, 20),
    metrics=None,
    backend: str = "auto",
) -> dict:
    """Rank every eligible item for every user with held-out positives and compute the metrics.

    Each such user's *complete* ranking of the catalogue minus ``exclude`` is produced by the engine
    (``k`` = catalogue size, so full-ranking metrics -- AUC, MAP, MRR -- are exact), then handed to
    :func:`mmrec_fast.metrics.evaluate` with the per-user candidate counts and scores (for Cornac's
    tie handling). Users without held-out positives are skipped before ranking (they would be
    skipped by the metrics anyway).

    Parameters
    ----------
    model : Recommender
        A fitted model.
    positives : scipy sparse (n_users, n_items)
        Held-out relevant items.
    exclude : scipy sparse (n_users, n_items), optional
        Items removed from each user's candidates (training items, items outside the catalogue).
    ks : sequence of int
        Cut-offs for the @k metrics.
    metrics : sequence of str, optional
        Subset of metric names (default: all).
    backend : str
        Engine backend.

    Returns
    -------
    dict
        Metric name -> mean over evaluated users; ``"n_users"`` the number evaluated.
    """
    shape = (model.n_users, model.n_items)
    for name, matrix in (("positives", positives), ("exclude", exclude)):
        if matrix is not None and (not sp.issparse(matrix) or matrix.shape != shape):
            raise ValueError(f"{name} must be a scipy sparse matrix of shape {shape}")
    positives = sp.csr_matrix(positives)
    users = np.flatnonzero(np.diff(positives.indptr) > 0)
    sub_exclude = None if exclude is None else sp.csr_matrix(exclude)[users]
    top = topk(model.user_vectors()[users], model.item_vectors(), model.n_items, exclude=sub_exclude, backend=backend)
    n_candidates = candidate_counts(model.n_items, sub_exclude, n_users=len(users))
    return evaluate(
        top.indices,
        positives[users],
        ks,
        n_candidates=n_candidates,
        metrics=metrics,
        n_items=model.n_items,
        scores=top.scores,
    )
