"""Queries on a :class:`~mmrec_fast.index_state.Snapshot`: filters in external ids -> rows per segment, one
engine pass per segment (tombstones banned), results back in external ids, segments merged exactly.

Filter semantics at the index level (all in external ids, all composable):
eligible(u) = allow ∩ candidates(u) − ban − exclude(u). An id the snapshot does not hold (never added, or
removed since) matches nothing: the caller's lists may be older than the catalogue. A boolean ``allow`` /
``ban`` mask is positional over :meth:`Snapshot.live_ids` (ascending external ids).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import _arrays, validation
from ._search import search
from .index_state import Segment, Snapshot, as_external_ids
from .merge import merged_bound
from .result import TopK

__all__ = ["query", "as_users", "per_user_ids"]

_PAD_ID = np.iinfo(np.int64).max  # padding sorts after every real id in the merge


def as_users(snap: Snapshot, users):
    """Users validated against the snapshot's backend and dimension (kept in their array family on GPU backends)."""
    backend = snap.main.backend
    if getattr(backend, "array_api", False):
        return validation.as_float_matrix_any(
            users, "users", dim=snap.main.dim, dim_from="items", keep_half=getattr(backend, "half_inputs", False)
        )
    return validation.as_float_matrix(users, "users", dim=snap.main.dim, dim_from="items")


def per_user_ids(x, n_users: int, name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """A per-user id list argument as CSR (indptr, external ids); any sparse width, a tuple or a list of lists."""
    if x is None:
        return None
    if hasattr(x, "tocsr") and hasattr(x, "shape"):
        if x.shape[0] != n_users:
            raise ValueError(f"{name}: sparse matrix has {x.shape[0]} rows, expected one per user (U = {n_users})")
        csr = x.tocsr()
        indptr, ids = csr.indptr, csr.indices
    elif isinstance(x, tuple) and len(x) == 2:
        indptr, ids = x
    elif isinstance(x, list):
        if len(x) != n_users:
            raise ValueError(f"{name}: a list must hold one id sequence per user (U = {n_users}), got {len(x)} entries")
        rows = [as_external_ids(row, f"{name}[{u}]") for u, row in enumerate(x)]
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum([row.shape[0] for row in rows], out=indptr[1:])
        ids = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    else:
        raise ValueError(
            f"{name}: expected a scipy.sparse matrix with one row per user, a tuple (indptr, indices) "
            f"or a list of one id sequence per user, got {type(x).__name__}"
        )
    indptr = validation.to_numpy(indptr, f"{name} indptr")
    if indptr.ndim != 1 or indptr.shape[0] != n_users + 1 or indptr.dtype.kind not in "iu":
        raise ValueError(f"{name}: indptr must be a 1-D integer array of length U + 1 = {n_users + 1}")
    indptr = indptr.astype(np.int64, copy=False)
    ids = as_external_ids(ids, name)
    if indptr[0] != 0 or indptr[-1] != ids.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr must start at 0, never decrease and end at len(indices) = {ids.shape[0]}")
    return indptr, ids


def _global_ids(x, snap: Snapshot, name: str) -> np.ndarray | None:
    if x is None:
        return None
    arr = validation.to_numpy(x, name)
    if arr.dtype == bool:
        if arr.shape != (snap.n_items,):
            raise ValueError(
                f"{name}: a boolean mask needs one entry per item of the index ({snap.n_items}), got shape {arr.shape}"
            )
        # A plain index's ids are its rows: the mask goes to the engine as it is (no id round trip).
        return arr if snap.plain else snap.live_ids()[arr]
    return as_external_ids(arr, name)


def _segment_lists(seg: Segment, lists: tuple[np.ndarray, np.ndarray] | None):
    """Per-user external ids -> CSR of this segment's rows (ids it does not hold dropped)."""
    if lists is None:
        return None
    indptr, ids = lists
    rows = seg.rows_of(ids)
    held = rows >= 0
    if held.all():
        return indptr, rows
    users = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    new_indptr = np.zeros_like(indptr)
    np.cumsum(np.bincount(users[held], minlength=indptr.shape[0] - 1), out=new_indptr[1:])
    return new_indptr, rows[held]


def _segment_rows(seg: Segment, ids: np.ndarray | None) -> np.ndarray | None:
    if ids is None:
        return None
    if ids.dtype == bool:  # a plain index's positional mask (see _global_ids): already per row
        return ids
    rows = seg.rows_of(ids)
    # The engine takes ids in any order, duplicates included: no sort here (np.unique of a large ban list
    # cost more than the query itself).
    return rows[rows >= 0]


def _search_segment(seg, users, k, temperature, opts, exclude, ban, allow, candidates) -> TopK:
    user_block, num_threads, progress, normalizer, precision = opts
    return search(
        seg,
        users,
        k,
        exclude,
        temperature,
        user_block,
        num_threads,
        progress,
        allow=allow,
        ban=ban,
        candidates=candidates,
        normalizer=normalizer,
        precision=precision,
    )


def _empty(n_users: int, k: int, temperature: float, normalizer: bool) -> TopK:
    lse = np.full(n_users, -np.inf) if normalizer else None
    return TopK(np.full((n_users, k), -1, np.int64), np.full((n_users, k), -np.inf, np.float32), lse, temperature)


def _to_host(part: TopK) -> TopK:
    if isinstance(part.indices, np.ndarray):
        return part
    lse = None if part.log_normalizer is None else _arrays.asnumpy(part.log_normalizer)
    return dataclasses.replace(
        part, indices=_arrays.asnumpy(part.indices), scores=_arrays.asnumpy(part.scores), log_normalizer=lse
    )


def _external(part: TopK, seg: Segment) -> TopK:
    """A segment's result with rows replaced by external ids (-1 padding kept)."""
    part = _to_host(part)
    if seg.ids is None:
        return part
    rows = part.indices
    ids = np.where(rows >= 0, seg.ids[np.maximum(rows, 0)] if seg.ids.size else -1, -1)
    return dataclasses.replace(part, indices=ids)


def merge_by_id(parts: list[TopK], k: int) -> TopK:
    """Exact merge of disjoint segments' results: score descending, ties to the lower external id (int64)."""
    ids = np.concatenate([p.indices for p in parts], axis=1)
    scores = np.concatenate([p.scores for p in parts], axis=1)
    n_users, width = ids.shape
    tie = np.where(ids >= 0, ids, _PAD_ID)
    # -0.0 and +0.0 compare equal in the sort, so zeros tie and the id decides (the contract's order).
    order = np.lexsort((tie.ravel(), -scores.ravel(), np.repeat(np.arange(n_users), width)))
    take = (order.reshape(n_users, width) - np.arange(n_users)[:, None] * width)[:, :k]
    lses = [p.log_normalizer for p in parts if p.log_normalizer is not None]
    lse = np.logaddexp.reduce(np.stack(lses), axis=0) if len(lses) == len(parts) else None
    bound = None if lse is None else merged_bound([p.log_normalizer_bound for p in parts], lse)
    return dataclasses.replace(
        parts[0],
        indices=np.take_along_axis(ids, take, axis=1),
        scores=np.take_along_axis(scores, take, axis=1),
        log_normalizer=lse,
        log_normalizer_bound=bound,
    )


def query(
    snap: Snapshot,
    users,
    k: int,
    *,
    exclude=None,
    allow=None,
    ban=None,
    candidates=None,
    temperature: float = 1.0,
    normalizer: bool = True,
    precision: str = "fp32",
    user_block=None,
    num_threads=None,
    progress: bool = False,
) -> TopK:
    """Top-k of ``users`` against one snapshot, filters and results in external ids (``k``, ``temperature`` checked)."""
    opts = (user_block, num_threads, progress, normalizer, precision)
    if snap.plain and exclude is None and allow is None and ban is None and candidates is None:
        # The frozen, positional usage: exactly the engine's call, nothing translated.
        return _search_segment(snap.main, users, k, temperature, opts, None, None, None, None)
    users = as_users(snap, users)
    n_users = int(users.shape[0])
    validation.check_k(k, n_users)
    excl_ids = per_user_ids(exclude, n_users, "exclude")
    cand_ids = per_user_ids(candidates, n_users, "candidates")
    allow_ids = _global_ids(allow, snap, "allow")
    ban_ids = _global_ids(ban, snap, "ban")
    parts = []
    for seg, dead in zip(snap.segments(), (snap.dead, None)):
        allow_rows = _segment_rows(seg, allow_ids)
        if allow_rows is not None and allow_rows.size == 0:
            parts.append(_empty(n_users, k, temperature, normalizer))  # nothing allowed here: skip the pass
            continue
        ban_mask = None
        ban_rows = _segment_rows(seg, ban_ids)
        if dead is not None or (ban_rows is not None and ban_rows.size):
            ban_mask = np.zeros(seg.n_items, dtype=bool) if dead is None else dead.copy()
            if ban_rows is not None:
                ban_mask[ban_rows] = True
        part = _search_segment(
            seg,
            users,
            k,
            temperature,
            opts,
            _segment_lists(seg, excl_ids),
            ban_mask,
            allow_rows,
            _segment_lists(seg, cand_ids),
        )
        parts.append(_external(part, seg) if len(snap.segments()) > 1 or seg.ids is not None else part)
    return parts[0] if len(parts) == 1 else merge_by_id(parts, k)
