"""Implicit ALS (iALS) and its content-aware variant, with fold-in of new users and content-only new items.

The model is the confidence-weighted implicit matrix factorisation of Hu, Koren and Volinsky (2008) in
the parametrisation of Rendle et al. (2021, "Revisiting the Performance of iALS on Item Recommendation
Benchmarks"): every observed pair is pulled to 1 with weight ``c_ui`` (the stored value when
``use_values``, else 1), every pair is pulled to 0 with weight ``alpha0``, and the ridge of row ``r``
is ``reg * (n_r + alpha0 * n_other)**nu`` (``n_r``: the row's total observed weight), so ``nu = 1``
scales regularisation with frequency. Training alternates exact or conjugate-gradient solves of one
side with the other held fixed (numba kernels in :mod:`._ials_kernels`, multi-threaded over rows).

Each epoch solves the items first, then the users: the final user vectors are then the solve against
the final item vectors, so :meth:`IALS.fold_in` of an existing user's history reproduces that user's
trained vector (exactly with ``solver="cholesky"``).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext

import numba
import numpy as np
import scipy.sparse as sp

from . import _ials_kernels as kernels
from ._checks import check_features, check_interactions, history_rows
from .base import ScoreBlock, SizedRecommender, positive_int

logger = logging.getLogger(__name__)


def _blas_one_thread():
    """threadpoolctl's one-thread BLAS limit, or nothing when it is not installed (``[models]`` brings it)."""
    try:
        import threadpoolctl
    except ImportError:
        logger.info("threadpoolctl is not installed: BLAS threads are not limited during iALS epochs")
        return nullcontext()
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


__all__ = ["IALS", "ContentIALS"]

_SOLVERS = ("cg", "cholesky")


def _nonnegative(value, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {value!r}") from None
    if not np.isfinite(out) or out < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    return out


@contextmanager
def _threads(num_threads: int | None):
    """Run the numba kernels with ``num_threads`` threads (default: numba's), restored afterwards.

    BLAS is held to one thread meanwhile: its only work here is the small d x d Gram product, and
    OpenBLAS worker threads left spinning after it steal the cores the numba kernel runs on
    (measured: 5-20x slower epochs on a 2-core machine).
    """
    previous = numba.get_num_threads()
    if num_threads is not None:
        numba.set_num_threads(min(int(num_threads), numba.config.NUMBA_NUM_THREADS))
    try:
        with _blas_one_thread():
            yield
    finally:
        numba.set_num_threads(previous)


class IALS(SizedRecommender):
    """Implicit alternating least squares: ``score(u, i) = w_u . h_i`` with ``d = dim`` float32 factors.

    Parameters
    ----------
    n_users, n_items : int
        Shape of the interaction matrices the model is fitted on.
    dim : int
        Number of factors ``d`` (Rendle et al. go up to 2048; 64-256 suit ML-100K-sized data).
    alpha0 : float
        Weight of the all-pairs "predict 0" term (Rendle's unobserved weight), > 0.
    reg : float
        Ridge strength ``lambda`` (before frequency scaling).
    nu : float
        Frequency-scaling exponent of the ridge: row ``r`` gets ``reg * (n_r + alpha0 * n_other)**nu``
        (0: plain ridge; 1: Rendle's recommended scaling).
    epochs : int
        Alternating passes (each solves all items, then all users).
    solver : {"cg", "cholesky"}
        ``"cg"``: ``cg_steps`` conjugate-gradient steps per row warm-started from the previous epoch
        (fast); ``"cholesky"``: exact solve per row (float64 normal equations, LAPACK).
    cg_steps : int
        CG steps per row and half-step.
    init_scale : float
        Factors start as ``N(0, (init_scale / sqrt(dim))^2)`` (Rendle's small-std initialisation).
    use_values : bool
        Use the stored interaction values as confidences ``c_ui`` (must be > 0); default every observed
        pair has confidence 1.
    seed : int
        Seed of the initialisation; with a fixed thread count training is deterministic, and it is the
        same for any thread count since every row is solved by one thread in a fixed order.
    num_threads : int, optional
        Threads for the numba kernels (default: numba's setting).

    Notes
    -----
    The defaults are the best binary-feedback setting found on a validation split carved from
    MovieLens-100K's training part (NDCG@10 0.339 on the test split). With ratings as confidences
    (``use_values=True`` on the ratings matrix) the best setting there was ``dim=128, alpha0=0.55,
    reg=0.67, nu=0.5`` (NDCG@10 0.382, above EASE's); see ``benchmarks/tune_ease_ials.py``.
    """

    kind = "ials"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        dim: int = 128,
        alpha0: float = 0.07,
        reg: float = 0.4,
        nu: float = 0.5,
        epochs: int = 16,
        solver: str = "cg",
        cg_steps: int = 3,
        init_scale: float = 0.1,
        use_values: bool = False,
        seed: int = 0,
        num_threads: int | None = None,
        track_loss: bool = False,
    ):
        super().__init__(n_users, n_items)
        # The objective costs about a third of an epoch at 10M entries; off unless asked for.
        self.track_loss = bool(track_loss)
        self.dim = positive_int(dim, "dim")
        self.alpha0 = _nonnegative(alpha0, "alpha0")
        if self.alpha0 == 0:
            raise ValueError("alpha0 must be > 0 (without the all-pairs term every score is pulled to 1)")
        self.reg = _nonnegative(reg, "reg")
        self.nu = _nonnegative(nu, "nu")
        self.epochs = positive_int(epochs, "epochs")
        if solver not in _SOLVERS:
            raise ValueError(f"solver must be one of {_SOLVERS}, got {solver!r}")
        self.solver = solver
        self.cg_steps = positive_int(cg_steps, "cg_steps")
        self.init_scale = _nonnegative(init_scale, "init_scale")
        self.use_values = bool(use_values)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an integer, got {seed!r}")
        self.seed = int(seed)
        if num_threads is not None:
            positive_int(num_threads, "num_threads")
        self.num_threads = num_threads
        self._users: np.ndarray | None = None
        self._items: np.ndarray | None = None
        self.history: list[dict] = []

    # ----------------------------------------------------------------------------------------- shape
    def params(self) -> dict:
        """The constructor's arguments (JSON-able), as saved with the model."""
        return {
            "n_users": self._n_users,
            "n_items": self._n_items,
            "dim": self.dim,
            "alpha0": self.alpha0,
            "reg": self.reg,
            "nu": self.nu,
            "epochs": self.epochs,
            "solver": self.solver,
            "cg_steps": self.cg_steps,
            "init_scale": self.init_scale,
            "use_values": self.use_values,
            "seed": self.seed,
            "track_loss": self.track_loss,
        }

    # ------------------------------------------------------------------------------------- training
    def _weighted(self, matrix, name: str, n_rows: int) -> sp.csr_matrix:
        """CSR of confidences: ones, or the stored values when ``use_values`` (checked > 0)."""
        csr = check_interactions(matrix, name, n_rows, self._n_items).astype(np.float32)
        csr.eliminate_zeros()
        if self.use_values:
            if csr.nnz and (csr.data <= 0).any():
                raise ValueError(f"{name} values must be > 0 when use_values=True (they are confidences)")
        else:
            csr.data[:] = 1.0
        return csr

    def _row_reg(self, totals: np.ndarray, n_other: int) -> np.ndarray:
        """Per-row ridge ``reg * (n_r + alpha0 * n_other)**nu`` (float64)."""
        return self.reg * (totals.astype(np.float64) + self.alpha0 * n_other) ** self.nu

    def _half_step(self, csr: sp.csr_matrix, fixed: np.ndarray, reg: np.ndarray, out: np.ndarray, exact: bool) -> None:
        """Solve every row of ``out`` against ``fixed`` (in place)."""
        fixed64 = fixed.astype(np.float64)
        gram = self.alpha0 * (fixed64.T @ fixed64)
        if exact:
            kernels.solve_rows_exact(csr.indptr, csr.indices, csr.data, fixed, gram, reg, out)
        else:
            kernels.solve_rows_cg(
                csr.indptr, csr.indices, csr.data, fixed, gram.astype(np.float32), reg, out, self.cg_steps
            )

    def fit(self, train: sp.spmatrix, *, validation: sp.spmatrix | None = None) -> IALS:
        """Train on ``train`` (n_users x n_items; nonzero entries are the observed pairs).

        Parameters
        ----------
        train : scipy sparse (n_users, n_items)
            Observed interactions.
        validation : scipy sparse (n_users, n_items), optional
            Held-out positives: each epoch's ``val_ndcg@10`` (training items excluded) goes into
            ``history``; training itself never reads it.

        Returns
        -------
        IALS
            ``self``; ``history`` holds per-epoch ``seconds``, the objective ``loss`` with
            ``track_loss=True`` and, with ``validation``, ``val_ndcg@10``.
        """
        x = self._weighted(train, "train", self._n_users)
        if validation is not None:
            validation = check_interactions(validation, "validation", self._n_users, self._n_items)
        xt = x.T.tocsr()
        xt.sort_indices()
        user_reg = self._row_reg(np.asarray(x.sum(axis=1)).ravel(), self._n_items)
        item_reg = self._row_reg(np.asarray(xt.sum(axis=1)).ravel(), self._n_users)
        rng = np.random.default_rng(self.seed)
        std = self.init_scale / np.sqrt(self.dim)
        users = (rng.standard_normal((self._n_users, self.dim)) * std).astype(np.float32)
        items = (rng.standard_normal((self._n_items, self.dim)) * std).astype(np.float32)
        exact = self.solver == "cholesky"
        self.history = []
        with _threads(self.num_threads):
            for epoch in range(1, self.epochs + 1):
                started = time.perf_counter()
                self._half_step(xt, users, item_reg, items, exact)
                self._half_step(x, items, user_reg, users, exact)
                seconds = time.perf_counter() - started
                self._users, self._items = users, items
                entry = {"epoch": epoch, "seconds": seconds}
                if self.track_loss:
                    entry["loss"] = self._objective(x, user_reg, item_reg)
                if validation is not None:
                    entry["val_ndcg@10"] = self._validation_ndcg(validation, x)
                self.history.append(entry)
        return self

    def _objective(self, x: sp.csr_matrix, user_reg: np.ndarray, item_reg: np.ndarray) -> float:
        users64, items64 = self._users.astype(np.float64), self._items.astype(np.float64)
        observed = kernels.observed_loss(x.indptr, x.indices, x.data, self._users, self._items).sum()
        # sum over all pairs of (w_u . h_i)^2 = <W^T W, H^T H> (Frobenius): O((U + I) d^2), no U x I matrix.
        everything = float(np.sum((users64.T @ users64) * (items64.T @ items64)))
        ridge = float(
            user_reg @ np.einsum("ij,ij->i", users64, users64) + item_reg @ np.einsum("ij,ij->i", items64, items64)
        )
        return float(observed + self.alpha0 * everything + ridge)

    def loss(self, train: sp.spmatrix) -> float:
        """The training objective of the current factors on ``train`` (what each exact half-step lowers).

        Parameters
        ----------
        train : scipy sparse (n_users, n_items)
            Observed interactions (treated as in :meth:`fit`).
        """
        self._check_fitted()
        x = self._weighted(train, "train", self._n_users)
        user_reg = self._row_reg(np.asarray(x.sum(axis=1)).ravel(), self._n_items)
        item_reg = self._row_reg(np.asarray(x.sum(axis=0)).ravel(), self._n_users)
        return self._objective(x, user_reg, item_reg)

    def _validation_ndcg(self, validation: sp.csr_matrix, train: sp.csr_matrix) -> float:
        from ..evaluation import evaluate_model  # late import: evaluation imports models

        if validation.nnz == 0:
            return float("nan")
        return float(evaluate_model(self, validation, exclude=train, ks=(10,), metrics=("ndcg",))["ndcg@10"])

    # ------------------------------------------------------------------------------------- serving
    def _check_fitted(self) -> None:
        if self._users is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(train) first")

    def user_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self._users

    def item_vectors(self) -> np.ndarray:
        self._check_fitted()
        return self._items

    def blocks(self) -> list[ScoreBlock]:
        return [ScoreBlock("id", 0, self.dim)]

    def fold_in(self, history) -> np.ndarray:
        """User vectors for users not seen in training, from their interactions, without retraining.

        One exact solve per user against the trained item vectors, with the same confidences and
        frequency-scaled ridge as training: for a trained user's own history this is the vector the
        last training epoch computed (exactly with ``solver="cholesky"``; with ``"cg"`` training
        stopped a few CG steps short of it).

        Parameters
        ----------
        history : scipy sparse (n, n_items) or sequence of sequences of item ids
            Each new user's observed items (values are confidences when ``use_values``).

        Returns
        -------
        ndarray (n, dim) float32
        """
        self._check_fitted()
        x = self._history_matrix(history)
        reg = self._row_reg(np.asarray(x.sum(axis=1)).ravel(), self._n_items)
        out = np.zeros((x.shape[0], self.dim), dtype=np.float32)
        items64 = self._items.astype(np.float64)
        with _threads(self.num_threads):
            kernels.solve_rows_exact(
                x.indptr, x.indices, x.data, self._items, self.alpha0 * (items64.T @ items64), reg, out
            )
        return out

    def _history_matrix(self, history) -> sp.csr_matrix:
        rows = history_rows(history, self._n_items)
        return self._weighted(rows, "history", rows.shape[0])

    # -------------------------------------------------------------------------------------- saving
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays (saved bit-exact) and JSON-able parameters that :meth:`from_state` rebuilds from."""
        self._check_fitted()
        return {"user_factors": self._users, "item_factors": self._items}, self.params()

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> IALS:
        """Rebuild a fitted model from :meth:`state`'s output."""
        model = cls(**params)
        model._load_factors(arrays)
        return model

    def _load_factors(self, arrays: dict[str, np.ndarray]) -> None:
        for name, rows in (("user_factors", self._n_users), ("item_factors", self._n_items)):
            if name not in arrays:
                raise ValueError(f"arrays lacks {name!r}")
            if arrays[name].shape != (rows, self.dim):
                raise ValueError(f"arrays[{name!r}] has shape {arrays[name].shape}, expected {(rows, self.dim)}")
        self._users = np.ascontiguousarray(arrays["user_factors"], dtype=np.float32)
        self._items = np.ascontiguousarray(arrays["item_factors"], dtype=np.float32)


class ContentIALS(IALS):
    """iALS plus a ridge map from item content to item factors, so items without interactions get vectors.

    After the iALS fit, ``W`` (``C x d``) and an intercept are fitted by ridge regression from the
    content of the items that have training interactions to their trained factors, the ridge
    strength chosen by efficient leave-one-out (:class:`sklearn.linear_model.RidgeCV`) -- no
    interaction data is held out for it. Items with interactions keep their trained factors (warm quality is exactly the
    ID-only model's); items without any (new items in the catalogue) get ``features @ W + b``, as does
    :meth:`item_vectors_from` for items added later.

    Parameters
    ----------
    n_users, n_items : int
        Shape of the interaction matrices.
    features : ndarray (n_items, C) or FusedItems
        Item content vectors (e.g. text embeddings).
    feature_blocks : optional
        Modality blocks of ``features`` (only validated here: the score is one ``"id"`` block).
    map_alphas : sequence of float
        Ridge strengths searched by leave-one-out for the content map.
    map_weighting : {"none", "log1p", "count"}
        Weight of each warm item in the map's fit: equal (default), ``log(1 + n_i)`` or ``n_i``
        (its interaction count). Equal weights ranked cold ML-100K items best among cold items
        (NDCG@10 0.336 vs 0.333 log1p, 0.270 count; items held out of the training part only).
    **kwargs
        :class:`IALS` arguments.
    """

    kind = "ials-content"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        features,
        *,
        feature_blocks=None,
        map_alphas=(0.01, 0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0),
        map_weighting: str = "none",
        **kwargs,
    ):
        super().__init__(n_users, n_items, **kwargs)
        self.features, _ = check_features(features, self._n_items, feature_blocks)
        alphas = np.asarray(map_alphas, dtype=np.float64).ravel()
        if alphas.size == 0 or not np.isfinite(alphas).all() or (alphas <= 0).any():
            raise ValueError(f"map_alphas must be a non-empty sequence of positive numbers, got {map_alphas!r}")
        self.map_alphas = tuple(float(a) for a in alphas)
        if map_weighting not in ("none", "log1p", "count"):
            raise ValueError(f"map_weighting must be 'none', 'log1p' or 'count', got {map_weighting!r}")
        self.map_weighting = map_weighting
        self.map_alpha: float | None = None
        self._coef: np.ndarray | None = None
        self._intercept: np.ndarray | None = None
        self.cold_items: np.ndarray | None = None  # items whose vectors came from content at fit time

    def params(self) -> dict:
        return {
            **super().params(),
            "map_alphas": list(self.map_alphas),
            "map_weighting": self.map_weighting,
            "map_alpha": self.map_alpha,
        }

    def fit(self, train: sp.spmatrix, *, validation: sp.spmatrix | None = None) -> ContentIALS:
        """Fit iALS on ``train`` (see :meth:`IALS.fit`), then the content map; cold items get mapped vectors."""
        from .._optional import require

        RidgeCV = require("sklearn.linear_model", extra="models", feature="ContentIALS's content map").RidgeCV

        super().fit(train, validation=validation)
        counts = np.diff(sp.csc_matrix(train).indptr)
        warm = counts > 0
        if warm.sum() < 2:
            raise ValueError("train must have interactions on at least 2 items to fit the content map")
        weights = {"none": None, "log1p": np.log1p(counts[warm]), "count": counts[warm].astype(np.float64)}[
            self.map_weighting
        ]
        ridge = RidgeCV(alphas=np.array(self.map_alphas), fit_intercept=True)
        ridge.fit(self.features[warm].astype(np.float64), self._items[warm].astype(np.float64), sample_weight=weights)
        self.map_alpha = float(ridge.alpha_)
        self._coef = np.ascontiguousarray(ridge.coef_.T, dtype=np.float32)  # (C, d)
        self._intercept = np.asarray(ridge.intercept_, dtype=np.float32).reshape(self.dim)
        if (~warm).any():
            self._items = self._items.copy()
            self._items[~warm] = self.item_vectors_from(self.features[~warm])
        self.cold_items = np.flatnonzero(~warm)
        return self

    def item_vectors_from(self, features) -> np.ndarray:
        """Item vectors for new items from their content alone (the fitted ridge map).

        Parameters
        ----------
        features : ndarray (n, C)
            Content vectors, encoded like the training ``features``.

        Returns
        -------
        ndarray (n, dim) float32
        """
        if self._coef is None:
            raise RuntimeError("ContentIALS is not fitted; call fit(train) first")
        matrix = np.asarray(features.matrix if hasattr(features, "matrix") else features)
        if matrix.ndim != 2:
            raise ValueError(f"features must be a 2-D (n, C) array, got shape {matrix.shape}")
        arr, _ = check_features(matrix, matrix.shape[0], None)
        if arr.shape[1] != self._coef.shape[0]:
            raise ValueError(
                f"features must have {self._coef.shape[0]} columns like the training features, got {arr.shape[1]}"
            )
        return np.ascontiguousarray(arr @ self._coef + self._intercept, dtype=np.float32)

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        arrays, params = super().state()
        return {**arrays, "features": self.features, "map_coef": self._coef, "map_intercept": self._intercept}, params

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> ContentIALS:
        params = dict(params)
        map_alpha = params.pop("map_alpha", None)
        for name in ("features", "map_coef", "map_intercept"):
            if name not in arrays:
                raise ValueError(f"arrays lacks {name!r}")
        model = cls(features=arrays["features"], **params)
        model._load_factors(arrays)
        model.map_alpha = map_alpha
        model._coef = np.ascontiguousarray(arrays["map_coef"], dtype=np.float32)
        model._intercept = np.ascontiguousarray(arrays["map_intercept"], dtype=np.float32)
        return model
