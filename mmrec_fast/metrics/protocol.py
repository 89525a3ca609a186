"""Evaluation inputs that reproduce Cornac 3.0.1's ``ranking_eval`` protocol exactly."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["cornac_protocol"]


def cornac_protocol(train, test, rating_threshold: float = 1.0):
    """Exclusion, positives and candidate counts as Cornac's ``ranking_eval`` defines them.

    Cornac (``eval_methods/base_method.py``, ``exclude_unknowns=True``) ranks, for each test user
    with at least one positive, every item known from training except the user's training
    *positives*; training items rated below the threshold stay in as negatives. Its positives are
    the test rows rated ``>= rating_threshold`` whose user and item occur in training.

    Parameters
    ----------
    train, test : Interactions
        The two parts of one split (same id maps).
    rating_threshold : float
        Cornac's ``rating_threshold`` (default 1.0, Cornac's default). Logs without ratings count
        every row as positive.

    Returns
    -------
    exclude : scipy.sparse.csr_matrix (n_users, n_items)
        Pass as ``topk(..., exclude=exclude)``: the user's training positives plus every item never
        seen in training.
    positives : scipy.sparse.csr_matrix (n_users, n_items)
        Pass as ``evaluate(ranked, positives, ...)``.
    n_candidates : ndarray of int64, shape (n_users,)
        Pass as ``evaluate(..., n_candidates=n_candidates)``.
    """
    from ..data import binarize, drop_unseen

    if test.user_map != train.user_map or test.item_map != train.item_map:
        raise ValueError("test: must share train's id maps (both parts of one split)")
    n_users, n_items = train.n_users, train.n_items
    train_pos = train.to_csr() if train.ratings is None else binarize(train, rating_threshold).to_csr()
    kept = drop_unseen(test, train)
    positives = kept.to_csr() if kept.ratings is None else binarize(kept, rating_threshold).to_csr()
    seen = np.zeros(n_items, dtype=bool)
    seen[train.items] = True
    unseen = np.flatnonzero(~seen)
    # Every user excludes every unseen item: n_users x n_unseen entries (never the full U x I).
    unseen_mat = sp.csr_matrix(
        (
            np.ones(n_users * len(unseen), dtype=np.float32),
            np.tile(unseen, n_users),
            np.arange(n_users + 1, dtype=np.int64) * len(unseen),
        ),
        shape=(n_users, n_items),
    )
    exclude = (train_pos + unseen_mat).tocsr()
    exclude.data[:] = 1.0
    exclude.sort_indices()
    n_candidates = n_items - np.diff(exclude.indptr).astype(np.int64)
    return exclude, positives, n_candidates
