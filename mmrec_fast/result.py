"""Result containers returned by the engine."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

__all__ = ["TopK", "PairScores", "probabilities"]


def probabilities(scores: np.ndarray, log_normalizer: np.ndarray, temperature: float) -> np.ndarray:
    """``exp(score / temperature - log_normalizer)`` in float64, 0 wherever the score is -inf.

    Padding slots (score -inf) and users with no eligible item (normaliser -inf) must not compute
    (-inf) - (-inf); they get probability 0 explicitly. A log-probability a rounding above 0 (the
    normaliser computed ~1e-7 too small for a dominant item) is read as 0: a probability is at most 1.
    """
    scores = np.asarray(scores, dtype=np.float64)
    lse = np.asarray(log_normalizer, dtype=np.float64)
    lse = lse.reshape(lse.shape + (1,) * (scores.ndim - lse.ndim))
    if lse.size and np.isfinite(lse.sum()):
        # Every normaliser finite (the common case, one reduction to know it): a -inf score gives
        # exp(-inf) = 0 on its own; scores are finite or -inf, never +inf or NaN, in engine results.
        logp = scores * (1.0 / temperature) - lse
        np.minimum(logp, 0.0, out=logp)
        if not np.isnan(logp).any():
            return np.exp(logp, out=logp)
    present = np.isfinite(scores) & np.isfinite(lse)
    with np.errstate(invalid="ignore", over="ignore"):
        # score * (1 / T): the same float64 product the backends take as the normaliser's reference.
        logp = np.where(present, np.minimum(scores * (1.0 / temperature) - lse, 0.0), -np.inf)
    return np.exp(logp)


@dataclass(frozen=True)
class TopK:
    """Each user's best items, their scores, and the softmax over the whole eligible catalogue.

    The arrays are NumPy arrays, or -- from the "cuda", "cupy" and "torch" backends -- arrays of the same
    family as the ``users`` argument (torch tensors on their device, CuPy arrays).

    Attributes
    ----------
    indices : ndarray of int64, shape (U, k)
        Item ids sorted by descending score, ties to the lower id; -1 in slots beyond the eligible items.
    scores : ndarray of float32, shape (U, k)
        Raw dot products ``u_i . v_j`` (-inf in padding slots).
    log_normalizer : ndarray of float64, shape (U,), or None
        ``logsumexp`` of ``score / temperature`` over every eligible item (-inf if there is none).
        ``None`` for a top-k-only query (``normalizer=False``).
    probs : ndarray of float32, shape (U, k), or None
        ``exp(score / temperature - log_normalizer)``: each listed item's probability under the softmax
        over the whole eligible catalogue (0 in padding slots). ``None`` when ``log_normalizer`` is.
    temperature : float
        The softmax temperature used.
    log_normalizer_bound : ndarray of float64, shape (U,), or None
        ``None`` when ``log_normalizer`` is the float32 engine's own (``precision="fp32"``, candidate
        lists, top-k only). With ``precision="int8"`` the normaliser comes from the int8 first pass and
        this holds a proven per-user bound: ``|log_normalizer - lse_fp32| <= log_normalizer_bound``, where
        ``lse_fp32`` is the float32 engine's normaliser of the same query (0 for users without an eligible
        item and users the float32 fallback computed). ``probs`` inherit it: each is within a factor
        ``exp(±bound)`` of the float32 one. See ``docs/int8.md``.
    """

    indices: np.ndarray
    scores: np.ndarray
    log_normalizer: np.ndarray | None
    temperature: float = 1.0
    log_normalizer_bound: np.ndarray | None = None

    @cached_property
    def probs(self) -> np.ndarray | None:  # documented in the class docstring
        # Computed on first access: a caller who reads only ids and scores (the latency-bound path) does
        # not pay for the exponentials.
        if self.log_normalizer is None:  # top-k only: nothing to normalise by
            return None
        if isinstance(self.scores, np.ndarray):
            return probabilities(self.scores, self.log_normalizer, self.temperature).astype(np.float32)
        # torch tensors / CuPy arrays from a GPU-capable backend: computed where they live
        from ._arrays import probabilities as array_probabilities

        return array_probabilities(self.scores, self.log_normalizer, self.temperature)

    @property
    def k(self) -> int:
        """List length (columns of :attr:`indices`)."""
        return self.indices.shape[1]

    def __len__(self) -> int:
        return self.indices.shape[0]


@dataclass(frozen=True)
class PairScores:
    """Scores and catalogue-softmax probabilities of given (user, item) pairs.

    Attributes
    ----------
    scores : ndarray of float32, shape (n,)
        ``u . v`` of each pair.
    log_probs : ndarray of float64, shape (n,)
        ``score / temperature - log_normalizer[user]``; -inf for an excluded pair.
    probs : ndarray of float64, shape (n,)
        ``exp(log_probs)``.
    """

    scores: np.ndarray
    log_probs: np.ndarray
    probs: np.ndarray
