"""Content-based profiles: a user is the weighted mean of the content vectors of their items."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._checks import check_features, check_interactions
from .base import Recommender, ScoreBlock

__all__ = ["ContentProfile"]


class ContentProfile(Recommender):
    """``user_u = sum_i w_ui f_i / sum_i w_ui`` over the user's training items; ``score = user_u . f_i``.

    With L2-normalised modality blocks (what :func:`mmrec_fast.encoders.fuse` produces) the score is
    the user's mean cosine similarity of item ``i`` to their history, summed over modalities.
    A user with no training item gets a zero profile: every item scores 0, so the engine's tie rule
    (lower item id first) orders the list; evaluate such users separately if that matters.

    Parameters
    ----------
    features : ndarray (n_items, C)
        Item content vectors.
    feature_blocks : mapping or sequence of ScoreBlock, optional
        Modality blocks of ``features`` (one ``"content"`` block if omitted).
    use_values : bool
        Weight items by the stored interaction values (e.g. ratings) instead of 1.
    """

    kind = "content"

    def __init__(self, features: np.ndarray, *, feature_blocks=None, use_values: bool = False):
        n_items = (features.matrix if hasattr(features, "matrix") else np.asarray(features)).shape[0]
        self.features, self.feature_blocks = check_features(features, n_items, feature_blocks)
        self.use_values = bool(use_values)
        self._users: np.ndarray | None = None
        self.history: list[dict] = []

    @property
    def n_users(self) -> int:
        if self._users is None:
            raise RuntimeError("ContentProfile is not fitted; call fit(train) first")
        return self._users.shape[0]

    @property
    def n_items(self) -> int:
        return self.features.shape[0]

    def fit(self, train: sp.spmatrix, *, validation=None) -> ContentProfile:
        """Build every user's profile from ``train`` (n_users x n_items); ``validation`` is unused."""
        if not sp.issparse(train):
            raise ValueError(f"train must be a scipy sparse users x items matrix, got {type(train).__name__}")
        train = check_interactions(train, "train", train.shape[0], self.n_items)
        weights = train.astype(np.float64)
        if not self.use_values:
            weights.data[:] = 1.0
        if (weights.data < 0).any():
            raise ValueError("train values must be >= 0 when used as weights (use_values=True)")
        totals = np.asarray(weights.sum(axis=1)).ravel()
        scale = np.divide(1.0, totals, out=np.zeros_like(totals), where=totals > 0)
        profiles = sp.diags(scale) @ weights @ self.features.astype(np.float64)
        self._users = np.ascontiguousarray(profiles, dtype=np.float32)
        return self

    def user_vectors(self) -> np.ndarray:
        if self._users is None:
            raise RuntimeError("ContentProfile is not fitted; call fit(train) first")
        return self._users

    def item_vectors(self) -> np.ndarray:
        return self.features

    def blocks(self) -> list[ScoreBlock]:
        return list(self.feature_blocks)

    def representation(self) -> np.ndarray:
        return self.features
