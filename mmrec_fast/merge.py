"""Exact merge of partial top-k results computed on disjoint item shards.

The distributed path and any item-sharded computation rely on this: the merged result equals the
result on the whole catalogue (top-k by the contract's order, normalisers combined with log-add-exp).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from . import _keys, validation
from .result import TopK

__all__ = ["merge_topk", "merged_bound"]


def merge_topk(parts: Sequence[TopK], k: int | None = None) -> TopK:
    """Merge results of the same users over disjoint item shards into one result.

    Parameters
    ----------
    parts : sequence of TopK
        One result per item shard, indices already in the global item id space, same users in the same
        order, same temperature.
    k : int, optional
        Length of the merged lists; defaults to the longest part's k.

    Returns
    -------
    TopK
        Identical (ids, scores, normaliser up to float rounding) to a single call over all shards. Its
        ``log_normalizer`` (and ``probs``) is ``None`` when any part was computed with
        ``normalizer=False``: a sum with a missing term is not a normaliser. Its
        ``log_normalizer_bound`` is :func:`merged_bound` of the parts' (``None`` when every part's
        normaliser is the float32 engine's own, or when there is no normaliser).

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> rng = np.random.default_rng(0)
    >>> u, v = rng.normal(size=(4, 8)), rng.normal(size=(100, 8))
    >>> a, b = mf.topk(u, v[:60], 5), mf.topk(u, v[60:], 5)
    >>> b = mf.TopK(np.where(b.indices >= 0, b.indices + 60, -1), b.scores, b.log_normalizer)
    >>> merged = mf.merge_topk([a, b])
    >>> bool((merged.indices == mf.topk(u, v, 5).indices).all())
    True
    """
    if isinstance(parts, TopK) or not isinstance(parts, Sequence):
        raise TypeError(f"parts: expected a sequence of TopK results, got {type(parts).__name__}")
    if not parts:
        raise ValueError("parts: need at least one partial result")
    for i, part in enumerate(parts):
        if not isinstance(part, TopK):
            raise TypeError(f"parts[{i}]: expected a TopK result, got {type(part).__name__}")
    if k is not None:
        k = validation.check_k(k, len(parts[0]))
    n_users = len(parts[0])
    temperature = parts[0].temperature
    for i, part in enumerate(parts):
        if len(part) != n_users:
            raise ValueError(f"parts[{i}]: has {len(part)} users, parts[0] has {n_users}")
        if part.temperature != temperature:
            raise ValueError(f"parts[{i}]: temperature {part.temperature} differs from {temperature}")
    if k is None:
        k = max(part.k for part in parts)
    all_ids = np.concatenate([np.asarray(p.indices) for p in parts], axis=1)
    _check_disjoint(all_ids)
    keys = np.concatenate([_keys.encode(p.scores, p.indices) for p in parts], axis=1)
    scores, indices = _keys.decode(_keys.top_keys(keys, k))
    bound = None
    if any(p.log_normalizer is None for p in parts):
        lse = None
    else:
        lse = np.logaddexp.reduce(np.stack([np.asarray(p.log_normalizer) for p in parts]), axis=0)
        bound = merged_bound([p.log_normalizer_bound for p in parts], lse)
    return TopK(indices, scores, lse, temperature, bound)


def merged_bound(bounds: Sequence[np.ndarray | None], log_normalizer: np.ndarray) -> np.ndarray | None:
    """Bound of a log-add-exp of normalisers that are each within their own bound of the float32 ones.

    ``logsumexp`` moves by at most ``max_i |delta_i|`` when each input moves by ``delta_i`` (it is
    1-Lipschitz in the max norm), so the merged normaliser is within the largest part bound of the merge
    of the float32 normalisers, plus a few float64 roundings of the merge itself on either side.

    Parameters
    ----------
    bounds : sequence of (U,) arrays or None
        Each part's ``TopK.log_normalizer_bound``; ``None`` counts as 0 (an exact float32 normaliser).
    log_normalizer : ndarray of float64, shape (U,)
        The merged normaliser.

    Returns
    -------
    ndarray of float64, shape (U,), or None
        ``None`` when every part's bound is ``None``; 0 for users whose merged normaliser is -inf.
    """
    if all(b is None for b in bounds):
        return None
    lse = np.asarray(log_normalizer, dtype=np.float64)
    worst = np.zeros(lse.shape, dtype=np.float64)
    for b in bounds:
        if b is not None:
            np.maximum(worst, np.asarray(b, dtype=np.float64), out=worst)
    rounding = 4 * len(bounds) * np.spacing(np.maximum(np.abs(np.where(np.isfinite(lse), lse, 0.0)), 1.0))
    return np.where(np.isneginf(lse), 0.0, worst + rounding)


def _check_disjoint(ids: np.ndarray) -> None:
    """Shards must be disjoint: an item id listed twice for one user would be merged as two items."""
    if ids.shape[1] < 2:
        return
    ordered = np.sort(ids, axis=1)
    dup = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if dup.any():
        row, col = np.argwhere(dup)[0]
        raise ValueError(
            f"parts: item {int(ordered[row, col])} appears in more than one part for user {int(row)}; "
            "the shards must be disjoint"
        )
