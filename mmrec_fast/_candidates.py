"""Top-k over per-user candidate lists: only each user's eligible candidates are scored.

eligible(u) = candidates(u) ∩ allowed - banned - exclude(u) is built on the host in O(nnz log nnz)
(CSR rows are sorted), then the (user, item) pairs are scored in chunks (a gathered float32 dot
product), ranked by (score descending, item ascending) -- the contract's order, ``-0.0 == +0.0`` -- and
the normaliser is a float64 log-sum-exp over each user's pairs. The same code serves every backend:
the work is O(nnz x d), not O(U x I x d), so it never needs the blocked kernels.
"""

from __future__ import annotations

import numpy as np

from . import _arrays

__all__ = ["topk_candidates", "eligible_pairs"]

# (user, item) pairs scored per step: the gathered rows take 2 x d x 4 bytes each (64 MB at d = 64).
_PAIR_CHUNK = 1 << 18


def _in_csr(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Whether each (rows[i], items[i]) is an entry of the row-sorted CSR (one binary search per pair)."""
    if indices.size == 0 or rows.size == 0:
        return np.zeros(rows.shape, dtype=bool)
    width = int(max(indices.max(), items.max())) + 1
    csr_rows = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    flat = csr_rows * width + indices
    query = rows * width + items
    pos = np.searchsorted(flat, query)
    return (pos < flat.shape[0]) & (flat[np.minimum(pos, flat.shape[0] - 1)] == query)


def eligible_pairs(cand, excl, mask) -> tuple[np.ndarray, np.ndarray]:
    """The (row, item) pairs of ``cand`` (CSR, rows sorted) that the mask allows and ``excl`` keeps.

    Returns
    -------
    rows, items : ndarray of int64
        Sorted by row, then item.
    """
    indptr, items = cand
    rows = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    keep = np.ones(items.shape[0], dtype=bool)
    if mask is not None:
        keep &= mask[items].astype(bool)
    keep &= ~_in_csr(excl[0], excl[1], rows, items)
    return rows[keep], items[keep]


def topk_candidates(users, items, k, excl, cand, mask, temperature, normalizer):
    """Top-k, scores and normaliser of each user over its eligible candidates (host NumPy results).

    Parameters
    ----------
    users : ndarray of float32, shape (U, d)
    items : array of shape (I, d)
        The index's items (any family; brought to the host once, as float32).
    k : int
    excl, cand : tuple of ndarray
        Validated CSR (indptr, indices) of the exclusions and the candidates (rows sorted, unique).
    mask : ndarray of uint8, shape (I,), or None
        Global eligibility.
    temperature : float
    normalizer : bool
        False: the normaliser is left -inf (not computed).

    Returns
    -------
    indices (U, k) int64, scores (U, k) float32, lse (U,) float64
    """
    n_users = users.shape[0]
    indices = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    rows, cols = eligible_pairs(cand, excl, mask)
    n = rows.shape[0]
    if n == 0:
        return indices, scores, lse
    host_items = _arrays.asnumpy(items)
    values = np.empty(n, dtype=np.float32)
    for p0 in range(0, n, _PAIR_CHUNK):
        p1 = min(p0 + _PAIR_CHUNK, n)
        u = users[rows[p0:p1]]
        v = host_items[cols[p0:p1]].astype(np.float32, copy=False)
        np.einsum("ij,ij->i", u, v, out=values[p0:p1])
    # Score descending, ties to the lower item (cols ascending within a row; -0.0 == +0.0 here).
    order = np.lexsort((cols, -values, rows))
    rows_o, cols_o, values_o = rows[order], cols[order], values[order]
    counts = np.bincount(rows, minlength=n_users)
    starts = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    rank = np.arange(n, dtype=np.int64) - starts[rows_o]
    top = rank < k
    indices[rows_o[top], rank[top]] = cols_o[top]
    scores[rows_o[top], rank[top]] = values_o[top]
    if normalizer:
        nonempty = np.flatnonzero(counts)
        first = starts[nonempty]
        # The pivot is the row's top score * (1 / T) -- the product result.probabilities takes -- and
        # the exponents are differences first (exact at any temperature and magnitude).
        row_top = values_o[first].astype(np.float64)
        shifted = (values_o.astype(np.float64) - np.repeat(row_top, counts[nonempty])) / temperature
        sums = np.add.reduceat(np.exp(shifted), first)
        lse[nonempty] = row_top * (1.0 / temperature) + np.log(sums)
    return indices, scores, lse
