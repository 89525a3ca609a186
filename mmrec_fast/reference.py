"""The float64 NumPy reference: simple, obviously right, and the single source of truth for tests.

Nothing here is fast. It materialises one (user chunk x I) float64 score matrix at a time, which is
fine for the problem sizes tests use (U, I up to a few thousand).
"""

from __future__ import annotations

import numpy as np

__all__ = ["topk_reference", "scores_reference"]


def scores_reference(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Dense float64 score matrix ``users @ items.T`` of the given (already float) inputs."""
    return np.asarray(users, dtype=np.float64) @ np.asarray(items, dtype=np.float64).T


def topk_reference(
    users,
    items,
    k,
    *,
    excl_indptr=None,
    excl_indices=None,
    temperature=1.0,
    chunk=512,
    allow=None,
    ban=None,
    candidates=None,
):
    """Top-k, scores and log-normaliser in float64, by sorting every row.

    Parameters
    ----------
    users, items : ndarray
        (U, d) and (I, d) arrays; converted to float64.
    k : int
        List length; slots beyond the eligible items are padded with (-1, -inf).
    excl_indptr, excl_indices : ndarray, optional
        CSR (U + 1,) row pointers and item ids excluded per user.
    temperature : float
        The normaliser is ``logsumexp(scores / temperature)`` over eligible items.
    allow, ban : ndarray of bool, shape (I,), optional
        Global filters: only allowed items, never banned ones.
    candidates : tuple (indptr, indices), optional
        CSR of each user's candidates: nothing outside them is eligible. Eligible =
        allowed ∩ candidates(u) - banned - excluded(u).
    chunk : int
        Users per dense float64 block.

    Returns
    -------
    indices : ndarray of int64, shape (U, k)
    scores : ndarray of float64, shape (U, k)
    log_normalizer : ndarray of float64, shape (U,)
    """
    users = np.asarray(users, dtype=np.float64)
    items = np.asarray(items, dtype=np.float64)
    n_users, n_items = users.shape[0], items.shape[0]
    indices = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float64)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    take = min(k, n_items)
    for start in range(0, n_users, chunk):
        stop = min(start + chunk, n_users)
        block = users[start:stop] @ items.T
        if allow is not None:
            block[:, ~np.asarray(allow, dtype=bool)] = -np.inf
        if ban is not None:
            block[:, np.asarray(ban, dtype=bool)] = -np.inf
        if candidates is not None:
            keep = np.zeros(block.shape, dtype=bool)
            for row in range(start, stop):
                keep[row - start, candidates[1][candidates[0][row] : candidates[0][row + 1]]] = True
            block[~keep] = -np.inf
        if excl_indptr is not None:
            for row in range(start, stop):
                block[row - start, excl_indices[excl_indptr[row] : excl_indptr[row + 1]]] = -np.inf
        # Stable sort of the negated scores: equal scores keep ascending item order (ties -> lower id).
        order = np.argsort(-block, axis=1, kind="stable")[:, :take]
        top = np.take_along_axis(block, order, axis=1)
        eligible = np.isfinite(top)
        indices[start:stop, :take] = np.where(eligible, order, -1)
        scores[start:stop, :take] = top
        row_top = block.max(axis=1, initial=-np.inf)
        has_any = np.isfinite(row_top)
        # The pivot is top * (1 / T), the product result.probabilities computes for the top score, and
        # the exponents are differences first: exact float64 at any temperature and magnitude.
        row_max = row_top * (1.0 / temperature)
        # Rows with no eligible item must not compute (-inf) - (-inf).
        shifted = np.exp((block[has_any] - row_top[has_any, None]) / temperature)
        lse[start:stop][has_any] = row_max[has_any] + np.log(shifted.sum(axis=1))
    return indices, scores, lse
