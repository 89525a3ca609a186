"""A blend of EASE and iALS served as one model: ``score = w * EASE / s_ease + (1 - w) * iALS / s_ials``.

EASE (item-item, ``n_items`` columns) and iALS (``dim`` factors) make different errors, and on
MovieLens-100K a blend of the two beats either alone on the validation split carved from training.
The blend needs no new scoring path: the user vector is the two parts' user vectors concatenated,
each scaled by its weight over its scale, and the item vector is the two parts' item vectors
concatenated, so the engine's dot product is exactly the weighted sum, and the score blocks
``"ease"`` and ``"ials"`` say how much of a recommendation each part contributed.

The two raw scores live on unrelated scales (EASE's grow with the rating values, iALS's sit near
[0, 1]); ``s_ease`` and ``s_ials`` are each part's root-mean-square score over every (training user,
item) pair, measured on the training data at fit time, so that ``w`` means the same thing whatever the
ridge strengths or the ratings' range, and a ``w`` chosen on a validation split carries over to the
refit on all of train.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import Recommender, ScoreBlock
from .ease import EASE
from .ials import IALS

__all__ = ["EASEIALSBlend", "score_rms"]

#: Bytes of one block of dense scores in :func:`score_rms` (bounds its working memory for any user count).
RMS_BLOCK_BYTES = 64 << 20

# Keyword -> the part and its argument name. Flat names keep every setting a scalar that
# pipeline.tune can search (a nested dict would be replaced wholesale by a grid point).
_EASE_ARGS = {"ease_reg": "reg", "max_items": "max_items", "use_values": "use_values"}
_IALS_ARGS = {
    "dim": "dim",
    "alpha0": "alpha0",
    "ials_reg": "reg",
    "nu": "nu",
    "epochs": "epochs",
    "solver": "solver",
    "cg_steps": "cg_steps",
    "init_scale": "init_scale",
    "use_values": "use_values",
    "seed": "seed",
    "num_threads": "num_threads",
}


def score_rms(users, items: np.ndarray) -> float:
    """Root-mean-square of ``users @ items.T`` over every (user, item) pair, without the whole matrix.

    Parameters
    ----------
    users : ndarray (U, D) or scipy sparse (U, D)
        User vectors (sparse rows, e.g. EASE's interaction rows, cost ``nnz * I`` per pass).
    items : ndarray (I, D)
        Item vectors.

    Returns
    -------
    float
        ``sqrt(mean((users @ items.T) ** 2))``, accumulated in float64; 0.0 when every score is 0.
    """
    items = np.asarray(items)
    if items.ndim != 2 or users.ndim != 2 or users.shape[1] != items.shape[1]:
        raise ValueError(f"users {users.shape} and items {items.shape} must be 2-D with the same number of columns")
    n_users, n_items = users.shape[0], items.shape[0]
    if n_users == 0 or n_items == 0:
        raise ValueError("users and items must each have at least one row")
    items64 = items.astype(np.float64)
    rows = max(1, RMS_BLOCK_BYTES // (8 * n_items))
    total = 0.0
    for start in range(0, n_users, rows):
        block = users[start : start + rows]
        scores = np.asarray(block @ items64.T)
        total += float(np.einsum("ij,ij->", scores, scores))
    return float(np.sqrt(total / (n_users * n_items)))


class EASEIALSBlend(Recommender):
    """EASE and iALS fitted on the same data and served as one model with blocks ``"ease"`` and ``"ials"``.

    ``score(u, i) = weight * ease(u, i) / s_ease + (1 - weight) * ials(u, i) / s_ials``, where each
    ``s`` is the part's root-mean-square score over all training users x items (:func:`score_rms`),
    or 1 with ``normalize=False``.

    Parameters
    ----------
    n_users, n_items : int
        Shape of the interaction matrices.
    weight : float
        Share of EASE in the blend, in [0, 1] (0: iALS alone; 1: EASE alone, up to a scale).
    ease_reg : float
        EASE's ridge ``lambda`` (:class:`~mmrec_fast.models.EASE` ``reg``).
    max_items : int
        EASE's largest accepted catalogue.
    use_values : bool
        Both parts learn from the stored values (ratings): EASE's ``X`` and iALS's confidences.
    dim, alpha0, ials_reg, nu, epochs, solver, cg_steps, init_scale, seed, num_threads
        iALS's settings (:class:`~mmrec_fast.models.IALS`; ``ials_reg`` is its ``reg``).
    normalize : bool
        Divide each part by its training score RMS before weighting (so ``weight`` transfers across
        data sizes and rating ranges).

    Notes
    -----
    Memory and the catalogue limit are EASE's (``n_items^2``); above ``max_items`` use
    :class:`~mmrec_fast.models.IALS` alone.
    """

    kind = "ease-ials"

    def __init__(
        self,
        n_users: int,
        n_items: int,
        *,
        weight: float = 0.15,
        ease_reg: float = 5000.0,
        max_items: int = 20_000,
        use_values: bool = False,
        dim: int = 128,
        alpha0: float = 0.55,
        ials_reg: float = 0.67,
        nu: float = 0.5,
        epochs: int = 20,
        solver: str = "cg",
        cg_steps: int = 3,
        init_scale: float = 0.1,
        seed: int = 0,
        num_threads: int | None = None,
        normalize: bool = True,
    ):
        if isinstance(weight, bool):
            raise TypeError(f"weight must be a real number, got {weight!r}")
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise TypeError(f"weight must be a real number, got {weight!r}") from None
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"weight must be in [0, 1] (EASE's share of the blend), got {weight!r}")
        self.weight, self.normalize = weight, bool(normalize)
        given = {
            "ease_reg": ease_reg,
            "max_items": max_items,
            "use_values": use_values,
            "dim": dim,
            "alpha0": alpha0,
            "ials_reg": ials_reg,
            "nu": nu,
            "epochs": epochs,
            "solver": solver,
            "cg_steps": cg_steps,
            "init_scale": init_scale,
            "seed": seed,
            "num_threads": num_threads,
        }
        # The parts validate their own arguments; their messages name the part's argument, so say
        # which of ours it was.
        try:
            self.ease = EASE(n_users, n_items, **{_EASE_ARGS[k]: given[k] for k in _EASE_ARGS})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"EASE part (ease_reg, max_items, use_values): {exc}") from None
        try:
            self.ials = IALS(n_users, n_items, **{_IALS_ARGS[k]: given[k] for k in _IALS_ARGS})
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"iALS part (dim, alpha0, ials_reg, nu, epochs, ...): {exc}") from None
        self._scales: np.ndarray | None = None  # (s_ease, s_ials), float64
        self._users: np.ndarray | None = None  # cached concatenation (EASE's user rows are dense)
        self._items: np.ndarray | None = None
        self.history: list[dict] = []

    # ----------------------------------------------------------------------------------------- shape
    @property
    def n_users(self) -> int:
        return self.ease.n_users

    @property
    def n_items(self) -> int:
        return self.ease.n_items

    def params(self) -> dict:
        """The constructor's arguments (JSON-able), as saved with the model."""
        ease, ials = self.ease.params(), self.ials.params()
        out = {"n_users": self.n_users, "n_items": self.n_items, "weight": self.weight, "normalize": self.normalize}
        out.update({ours: ease[theirs] for ours, theirs in _EASE_ARGS.items()})
        out.update({ours: ials[theirs] for ours, theirs in _IALS_ARGS.items() if theirs in ials})
        out["num_threads"] = self.ials.num_threads
        return out

    @property
    def scales(self) -> tuple[float, float]:
        """``(s_ease, s_ials)``: what each part's raw score is divided by before weighting."""
        self._check_fitted()
        return float(self._scales[0]), float(self._scales[1])

    # ------------------------------------------------------------------------------------- training
    def fit(self, train: sp.spmatrix, *, validation: sp.spmatrix | None = None) -> EASEIALSBlend:
        """Fit EASE and iALS on ``train`` and measure their score scales on it.

        Parameters
        ----------
        train : scipy sparse (n_users, n_items)
            Observed interactions (their values are used when ``use_values``).
        validation : scipy sparse, optional
            Passed to iALS (per-epoch ``val_ndcg@10`` in ``ials.history``); never used for fitting.

        Returns
        -------
        EASEIALSBlend
            ``self``; ``history`` is iALS's per-epoch history.
        """
        self.ease.fit(train)
        self.ials.fit(train, validation=validation)
        self.history = self.ials.history
        if self.normalize:
            # EASE's user vectors are its (sparse) training rows: measure from them, not a dense copy.
            scales = [
                score_rms(self.ease._train, self.ease.item_vectors()),
                score_rms(self.ials.user_vectors(), self.ials.item_vectors()),
            ]
            # A part whose every score is 0 (e.g. EASE on a one-item catalogue) keeps scale 1:
            # dividing by 0 would put inf into the vectors.
            scales = [s if s > 0 and np.isfinite(s) else 1.0 for s in scales]
        else:
            scales = [1.0, 1.0]
        self._set_scales(np.asarray(scales, dtype=np.float64))
        return self

    def _set_scales(self, scales: np.ndarray) -> None:
        self._scales = scales
        self._users = self._combine_users(self.ease.user_vectors(), self.ials.user_vectors())
        self._items = np.ascontiguousarray(
            np.hstack([self.ease.item_vectors(), self.ials.item_vectors()]), dtype=np.float32
        )

    def _combine_users(self, ease_rows: np.ndarray, ials_rows: np.ndarray) -> np.ndarray:
        """User side of the blend: each part's rows times its weight over its scale, side by side."""
        w_ease = self.weight / self._scales[0]
        w_ials = (1.0 - self.weight) / self._scales[1]
        out = np.empty((ease_rows.shape[0], ease_rows.shape[1] + ials_rows.shape[1]), dtype=np.float32)
        out[:, : ease_rows.shape[1]] = ease_rows * np.float32(w_ease)
        out[:, ease_rows.shape[1] :] = ials_rows * np.float32(w_ials)
        return out

    # ------------------------------------------------------------------------------------- serving
    def _check_fitted(self) -> None:
        if self._scales is None:
            raise RuntimeError("EASEIALSBlend is not fitted; call fit(train) first")

    def user_vectors(self) -> np.ndarray:
        """Float32 (n_users, n_items + dim): weighted, scaled EASE rows then iALS factors."""
        self._check_fitted()
        return self._users

    def item_vectors(self) -> np.ndarray:
        """Float32 (n_items, n_items + dim): EASE's item vectors (columns of ``B``) then iALS's factors."""
        self._check_fitted()
        return self._items

    def blocks(self) -> list[ScoreBlock]:
        n = self.n_items
        return [ScoreBlock("ease", 0, n), ScoreBlock("ials", n, n + self.ials.dim)]

    def representation(self) -> np.ndarray:
        """iALS's item factors: a dense ``dim``-wide similarity space (EASE's rows are catalogue-wide)."""
        self._check_fitted()
        return self.ials.item_vectors()

    def fold_in(self, history) -> np.ndarray:
        """User vectors of new users from their interactions, without retraining (both parts' fold-in).

        Parameters
        ----------
        history : scipy sparse (n, n_items) or sequence of sequences of item ids
            Each new user's observed items (values used when ``use_values``).

        Returns
        -------
        ndarray (n, n_items + dim) float32
        """
        self._check_fitted()
        return self._combine_users(self.ease.fold_in(history), self.ials.fold_in(history))

    # -------------------------------------------------------------------------------------- saving
    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Both parts' arrays (prefixed ``ease.`` / ``ials.``), the scales, and the parameters."""
        self._check_fitted()
        ease_arrays, _ = self.ease.state()
        ials_arrays, _ = self.ials.state()
        arrays = {
            **{f"ease.{k}": v for k, v in ease_arrays.items()},
            **{f"ials.{k}": v for k, v in ials_arrays.items()},
            "scales": self._scales.copy(),
        }
        return arrays, self.params()

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> EASEIALSBlend:
        """Rebuild a fitted blend from :meth:`state`'s output (bit-identical vectors)."""
        model = cls(**params)
        if "scales" not in arrays:
            raise ValueError("arrays lacks 'scales'")
        scales = np.asarray(arrays["scales"], dtype=np.float64)
        if scales.shape != (2,) or not np.isfinite(scales).all() or (scales <= 0).any():
            raise ValueError(f"arrays['scales'] must be 2 positive finite numbers, got {arrays['scales']!r}")
        for prefix, part in (("ease.", model.ease), ("ials.", model.ials)):
            sub = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            rebuilt = type(part).from_state(sub, part.params())
            setattr(model, prefix[:-1], rebuilt)
        model.ials.num_threads = params.get("num_threads")
        model._set_scales(scales)
        return model
