"""MostPop: every user gets the same ranking, by how many training users interacted with each item."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._checks import check_interactions
from .base import ScoreBlock, SizedRecommender

__all__ = ["MostPop"]

_SCALES = ("log", "count")


class MostPop(SizedRecommender):
    """Popularity baseline: user vector ``[1]``, item vector ``[log(1 + n_i)]`` (or ``[n_i]``).

    ``n_i`` is the number of distinct training users of item ``i``. Both scales rank identically
    (ties go to the lower item id, the engine's rule); with ``scale="log"`` the engine's catalogue
    softmax at temperature 1 gives each item a probability proportional to ``1 + n_i``.

    Parameters
    ----------
    n_users, n_items : int
        Shape of the interaction matrix.
    scale : {"log", "count"}
        How the count becomes the item's score.
    """

    kind = "mostpop"

    def __init__(self, n_users: int, n_items: int, *, scale: str = "log"):
        super().__init__(n_users, n_items)
        if scale not in _SCALES:
            raise ValueError(f"scale must be one of {_SCALES}, got {scale!r}")
        self.scale = scale
        self.counts: np.ndarray | None = None
        self.history: list[dict] = []

    def params(self) -> dict:
        """The constructor's arguments (JSON-able), as saved with the model."""
        return {"n_users": self._n_users, "n_items": self._n_items, "scale": self.scale}

    def fit(self, train: sp.spmatrix, *, validation=None) -> MostPop:
        """Count each item's distinct users in ``train`` (nonzero entries); ``validation`` is unused."""
        x = check_interactions(train, "train", self._n_users, self._n_items)
        x.eliminate_zeros()
        self.counts = np.bincount(x.indices, minlength=self._n_items).astype(np.int64)
        return self

    def _check_fitted(self) -> None:
        if self.counts is None:
            raise RuntimeError("MostPop is not fitted; call fit(train) first")

    def user_vectors(self) -> np.ndarray:
        self._check_fitted()
        return np.ones((self._n_users, 1), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        values = np.log1p(self.counts) if self.scale == "log" else self.counts
        return np.ascontiguousarray(values, dtype=np.float32).reshape(-1, 1)

    def blocks(self) -> list[ScoreBlock]:
        return [ScoreBlock("popularity", 0, 1)]

    def fold_in(self, history) -> np.ndarray:
        """User vectors for new users: ``[1]`` each (popularity ignores the history beyond its length).

        Parameters
        ----------
        history : scipy sparse (n, n_items) or sequence
            One entry per new user.
        """
        if sp.issparse(history):
            if history.ndim != 2 or history.shape[1] != self._n_items:
                raise ValueError(f"history must have {self._n_items} columns, got shape {history.shape}")
            n = history.shape[0]
        elif isinstance(history, (str, bytes)) or not hasattr(history, "__len__"):
            raise TypeError(f"history must be a scipy sparse matrix or a sequence, got {type(history).__name__}")
        else:
            n = len(history)
        return np.ones((n, 1), dtype=np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (the counts) and parameters that :meth:`from_state` rebuilds from."""
        self._check_fitted()
        return {"counts": self.counts}, self.params()

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> MostPop:
        """Rebuild a fitted model from :meth:`state`'s output."""
        model = cls(**params)
        if "counts" not in arrays:
            raise ValueError("arrays lacks 'counts'")
        counts = np.asarray(arrays["counts"])
        if counts.shape != (model.n_items,):
            raise ValueError(f"arrays['counts'] has shape {counts.shape}, expected {(model.n_items,)}")
        model.counts = counts.astype(np.int64)
        return model
