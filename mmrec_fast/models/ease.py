"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): a closed-form item-item model.

``B = I - P diag(1 / diag(P))`` with ``P = (X^T X + reg * I)^-1`` (float64), so ``B`` has a zero
diagonal (an item never recommends itself) and ``score(u, i) = x_u . B[:, i]``. For the engine, a
user's vector is their binary interaction row ``x_u`` (length ``n_items``) and item ``i``'s vector is
column ``i`` of ``B``: the dot product is exactly the EASE score.

Cost: ``O(n_items^2)`` memory and ``O(n_items^3)`` time for the inverse, and user vectors of length
``n_items``; that is why :class:`EASE` refuses catalogues above ``max_items`` (20,000 by default:
three float64 ``I x I`` matrices are 9.6 GB there) and points to :class:`~mmrec_fast.models.IALS`,
whose ``d``-dimensional factors serve any catalogue size.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from ._checks import check_interactions, history_rows
from .base import ScoreBlock, SizedRecommender, positive_int

__all__ = ["EASE"]

#: Largest dense user-vector matrix :meth:`EASE.user_vectors` hands out (bytes); beyond it use fold_in in batches.
DENSE_USER_BYTES = 2 << 30


class EASE(SizedRecommender):
    """Closed-form item-item regression with a zero-diagonal constraint (Steck 2019).

    Parameters
    ----------
    n_users, n_items : int
        Shape of the interaction matrix.
    reg : float
        L2 strength ``lambda`` (> 0) added to the Gram matrix's diagonal; Steck and Cornac use
        hundreds to a few thousand on MovieLens-sized data.
    max_items : int
        Largest catalogue accepted (memory grows as ``n_items^2``); above it use ``IALS``.
    use_values : bool
        Use the stored values (e.g. ratings) as ``X`` instead of binarising (Cornac's EASE does); the
        user vectors are then the value rows too.
    positive_only : bool
        Clip negative weights of ``B`` to 0 after the solve (Cornac's ``posB``).
    """

    kind = "ease"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        reg: float = 500.0,
        max_items: int = 20_000,
        use_values: bool = False,
        positive_only: bool = False,
    ):
        super().__init__(n_users, n_items)
        max_items = positive_int(max_items, "max_items")
        try:
            reg = float(reg)
        except (TypeError, ValueError):
            raise TypeError(f"reg must be a real number, got {reg!r}") from None
        if not np.isfinite(reg) or reg <= 0:
            raise ValueError(f"reg must be finite and > 0 (X^T X alone is singular), got {reg!r}")
        if n_items > max_items:
            raise ValueError(
                f"n_items={n_items} exceeds EASE's max_items={max_items}: EASE needs O(n_items^2) "
                f"memory ({3 * 8 * n_items**2 / 1e9:.1f} GB here); use IALS (mmrec_fast.models.IALS), "
                "whose factors serve any catalogue size, or raise max_items"
            )
        self.reg, self.max_items = reg, int(max_items)
        self.use_values, self.positive_only = bool(use_values), bool(positive_only)
        self._train: sp.csr_matrix | None = None
        self._weights: np.ndarray | None = None
        self.history: list[dict] = []

    def params(self) -> dict:
        """The constructor's arguments (JSON-able), as saved with the model."""
        return {
            "n_users": self._n_users,
            "n_items": self._n_items,
            "reg": self.reg,
            "max_items": self.max_items,
            "use_values": self.use_values,
            "positive_only": self.positive_only,
        }

    def fit(self, train: sp.spmatrix, *, validation=None) -> EASE:
        """Compute ``B`` from ``train`` (n_users x n_items, binarised unless ``use_values``); ``validation`` is unused.

        Returns
        -------
        EASE
            ``self``.
        """
        x = self._binary(train, "train", self._n_users)
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.reg
        # gram is symmetric positive definite (reg > 0): a Cholesky inverse is exact and half the work of LU.
        factor = scipy.linalg.cho_factor(gram, overwrite_a=True, check_finite=False)
        p = scipy.linalg.cho_solve(factor, np.eye(self._n_items), overwrite_b=True, check_finite=False)
        weights = p / (-np.diag(p))  # B = I - P diag(1/diag P): off-diagonal -P_ij / P_jj ...
        weights[np.diag_indices_from(weights)] = 0.0  # ... and the diagonal exactly 0.
        if self.positive_only:
            weights[weights < 0] = 0.0
        self._train = x
        # Item i's vector is column i of B; float32 is what the engine scores with.
        self._weights = np.ascontiguousarray(weights.T, dtype=np.float32)
        return self

    def _binary(self, matrix, name: str, n_rows: int) -> sp.csr_matrix:
        csr = check_interactions(matrix, name, n_rows, self._n_items).astype(np.float32)
        csr.eliminate_zeros()
        if not self.use_values:
            csr.data[:] = 1.0
        return csr

    def _check_fitted(self) -> None:
        if self._weights is None:
            raise RuntimeError("EASE is not fitted; call fit(train) first")

    def user_vectors(self) -> np.ndarray:
        """Dense float32 (n_users, n_items): each user's training row (binary unless ``use_values``)."""
        self._check_fitted()
        return self._dense(self._train)

    def _dense(self, rows: sp.csr_matrix) -> np.ndarray:
        size = rows.shape[0] * rows.shape[1] * 4
        if size > DENSE_USER_BYTES:
            raise ValueError(
                f"EASE user vectors are dense rows of n_items={self._n_items}: {size / 2**30:.1f} GiB "
                "for these users; score them in batches with fold_in(history[batch]), or use IALS"
            )
        return np.ascontiguousarray(rows.toarray(), dtype=np.float32)

    def item_vectors(self) -> np.ndarray:
        """Float32 (n_items, n_items): row ``i`` is column ``i`` of ``B``."""
        self._check_fitted()
        return self._weights

    def blocks(self) -> list[ScoreBlock]:
        return [ScoreBlock("id", 0, self._n_items)]

    def representation(self) -> np.ndarray:
        """Item-item weights (row ``i``: how much each item votes for ``i``) as the similarity space."""
        return self.item_vectors()

    def fold_in(self, history) -> np.ndarray:
        """User vectors of new users: their interaction rows (EASE needs no solve).

        Parameters
        ----------
        history : scipy sparse (n, n_items) or sequence of sequences of item ids
            Each new user's observed items (as a sparse matrix: with their values when ``use_values``).

        Returns
        -------
        ndarray (n, n_items) float32
        """
        self._check_fitted()
        rows = history_rows(history, self._n_items)
        return self._dense(self._binary(rows, "history", rows.shape[0]))

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (saved bit-exact: the training rows and the float32 weights) and parameters."""
        self._check_fitted()
        return {
            "train_indptr": self._train.indptr.astype(np.int64),
            "train_indices": self._train.indices.astype(np.int64),
            "train_values": self._train.data.astype(np.float32),
            "weights": self._weights,
        }, self.params()

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> EASE:
        """Rebuild a fitted model from :meth:`state`'s output."""
        model = cls(**params)
        for name in ("train_indptr", "train_indices", "train_values", "weights"):
            if name not in arrays:
                raise ValueError(f"arrays lacks {name!r}")
        if arrays["weights"].shape != (model.n_items, model.n_items):
            raise ValueError(
                f"arrays['weights'] has shape {arrays['weights'].shape}, expected {(model.n_items, model.n_items)}"
            )
        indptr, indices = np.asarray(arrays["train_indptr"]), np.asarray(arrays["train_indices"])
        if indptr.shape != (model.n_users + 1,):
            raise ValueError(f"arrays['train_indptr'] has shape {indptr.shape}, expected {(model.n_users + 1,)}")
        values = np.asarray(arrays["train_values"], dtype=np.float32)
        if values.shape != indices.shape:
            raise ValueError(f"arrays['train_values'] has shape {values.shape}, expected {indices.shape}")
        model._train = sp.csr_matrix((values, indices, indptr), shape=(model.n_users, model.n_items))
        model._weights = np.ascontiguousarray(arrays["weights"], dtype=np.float32)
        return model
