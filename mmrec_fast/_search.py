"""The top-k pass over a prepared :class:`~mmrec_fast.ItemIndex`: users streamed through the backend in
chunks (progress bar, Ctrl-C between chunks), filters applied, results padded and wrapped.

Shared by :func:`mmrec_fast.topk` (which builds a one-off index) and :meth:`ItemIndex.topk`, so neither
module imports the other. Arguments arrive with ``k`` and ``temperature`` already checked.

Filters (DESIGN.md 2b): eligible(u) = allowed - banned - exclude(u), intersected with candidates(u).

* ``allow`` / ``ban`` become one uint8 item mask that every backend's kernel takes (masked items are
  treated like excluded ones). When few items are eligible (:data:`COMPACT_FRACTION`), the eligible rows
  are gathered into a compact one-off catalogue instead (ids mapped back; they stay ascending, so the
  tie rule holds): a 1% allow-list then costs ~1% of a full scan.
* ``candidates`` (per-user lists) go to :mod:`mmrec_fast._candidates`, which scores only each user's
  eligible candidates.

Precision (``precision="fp32" | "int8" | "auto"``, resolved by :func:`mmrec_fast.int8.resolve_precision`):
"int8" runs the certified int8 first pass of :mod:`mmrec_fast.int8` (native backend, host users) on the
index's int8 form, built on first use and kept with the index's segment; ids and scores are bitwise the
float32 path's, and the normaliser carries ``TopK.log_normalizer_bound``. Filters, exclusions, chunks,
progress and Ctrl-C work as on the float32 path; candidate lists take the float32 candidate path (exact,
no bound).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from . import _arrays, _candidates, int8, validation
from .backends import BlockConfig
from .backends.base import ArrayBackend
from .result import TopK

if TYPE_CHECKING:
    from .index import ItemIndex

# Users per backend call: ~4e9 multiply-adds, so a call lasts about a second or two on a laptop
# (responsive progress bar and Ctrl-C) while being long enough to amortise per-call overhead.
_CHUNK_MACS = 4_000_000_000
_MIN_CHUNK_USERS = 1024
# Host backends gather the eligible rows into a compact catalogue when at most this fraction of the
# items is eligible (and the catalogue is at least _COMPACT_MIN_ITEMS long); otherwise the kernel
# skips masked items in place. Measured on a quiet machine with benchmarks/filters_cost.py (I = 200k,
# d = 64, k = 100, native backend, docs/benchmarks/filters_cost.txt): compact / mask time 0.08, 0.12,
# 0.27, 0.52 at 5, 10, 25, 50% eligible for U = 1000; 0.75, 1.25, 2.3, 3.0 for one user (whose query is
# itself one read of the prepared items, so the gather costs as much as it saves past ~7%). The copy
# holds at most half the catalogue's rows.
COMPACT_FRACTION = 0.5
COMPACT_FRACTION_FEW_USERS = 0.07
FEW_USERS = 64
_COMPACT_MIN_ITEMS = 4096


class _Catalogue(NamedTuple):
    """What a kernel call needs to know about the items it scans."""

    backend: object
    prepared: object
    n_items: int
    dim: int


def search(
    index: ItemIndex,
    users,
    k: int,
    exclude,
    temperature: float,
    user_block,
    num_threads,
    progress,
    *,
    allow=None,
    ban=None,
    candidates=None,
    normalizer=True,
    precision=None,
) -> TopK:
    """Each user's top-k and normaliser against ``index`` (see :func:`mmrec_fast.topk`).

    ``precision=None`` is "fp32".
    """
    normalizer = validation.check_bool(normalizer, "normalizer")
    precision = int8.check_precision("fp32" if precision is None else precision)
    backend = index.backend
    on_gpu = _arrays.is_device(users)
    array_api = getattr(backend, "array_api", False)
    out_family = None
    if array_api:
        out_family = _arrays.family(users)
        users = validation.as_float_matrix_any(
            users, "users", dim=index.dim, dim_from="items", keep_half=getattr(backend, "half_inputs", False)
        )
    else:
        users = validation.as_float_matrix(users, "users", dim=index.dim, dim_from="items")
    n_users, n_items = int(users.shape[0]), index.n_items
    validation.check_k(k, n_users)
    excl = validation.as_exclusion(exclude, n_users, n_items)
    mask, n_eligible = validation.item_mask(allow, ban, n_items)
    cand = None
    if candidates is not None:
        cand = validation.as_exclusion(candidates, n_users, n_items, name="candidates")
    validation.check_score_range(users, index.items, temperature, items_max_abs=index.max_abs)
    config = BlockConfig(user_block=user_block, item_block=index.item_block, num_threads=num_threads)
    if precision != "fp32":
        holder = _int8_holder(index)
        ready = "int8" in getattr(holder, "cache", {}) or not getattr(index.prepared, "streaming", True)
        precision = int8.resolve_precision(
            precision, getattr(backend, "name", ""), on_gpu=on_gpu, n_users=n_users, k=k, ready=ready
        )

    if cand is not None:
        indices, scores, lse = _candidates.topk_candidates(
            _arrays.asnumpy(users), index.items, k, excl, cand, mask, temperature, normalizer
        )
        if out_family is not None:
            indices, scores, lse = (_arrays.to_family(a, out_family) for a in (indices, scores, lse))
        return TopK(indices, scores, lse if normalizer else None, temperature)
    if precision == "int8":
        return _search_int8(index, users, k, excl, mask, n_eligible, temperature, config, progress, normalizer)

    catalogue = _Catalogue(backend, index.prepared, n_items, index.dim)
    ids = None
    if mask is not None and not array_api and _worth_compacting(n_eligible, n_items, n_users):
        ids = np.flatnonzero(mask)
        catalogue = _compact(index, ids, config)
        excl = _remap_exclusion(excl, ids, n_items)
        mask = None
    if array_api:
        indices, scores, lse = _run_arrays(users, catalogue, k, excl, temperature, config, progress, mask, normalizer)
        indices, scores, lse = (_arrays.to_family(a, cast(str, out_family)) for a in (indices, scores, lse))
    else:
        indices, scores, lse = _run_host(users, catalogue, k, excl, temperature, config, progress, mask, normalizer)
    if ids is not None:
        indices = np.where(indices >= 0, ids[np.maximum(indices, 0)], -1) if ids.size else indices
    return TopK(indices, scores, lse if normalizer else None, temperature)


def _int8_holder(index):
    """Where the index keeps its int8 form: the segment it reads (an ItemIndex's main one when plain)."""
    snapshot = getattr(index, "snapshot", None)
    return snapshot().main if callable(snapshot) else index


def _search_int8(index, users, k, excl, mask, n_eligible, temperature, config, progress, normalizer) -> TopK:
    """The int8 path on a host index: filters as the float32 path's (compact catalogue or item mask)."""
    n_users, n_items = users.shape[0], index.n_items
    ids = None
    if mask is not None and _worth_compacting(n_eligible, n_items, n_users):
        ids = np.flatnonzero(mask)
        excl = _remap_exclusion(excl, ids, n_items)
        items, n_items, mask = np.ascontiguousarray(np.asarray(index.items)[ids]), int(ids.shape[0]), None
        form = int8.prepare_int8(items) if n_items else None  # a one-off catalogue: not kept
    else:
        form = int8.cached_int8(_int8_holder(index), index.items) if n_items else None
    indices = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    bound = np.zeros(n_users, dtype=np.float64)
    if form is not None:
        excl_indptr, excl_indices = excl
        chunk = max(_MIN_CHUNK_USERS, _CHUNK_MACS // max(1, n_items * index.dim))
        for u0, u1 in _chunks(n_users, chunk, progress):
            if u0 == 0 and u1 == n_users:
                sub_indptr, sub_indices = excl_indptr, excl_indices
            else:
                sub_indptr, sub_indices = validation.exclusion_range(excl_indptr, excl_indices, u0, u1)
            idx, sc, ls, bd = int8.topk_int8(
                users[u0:u1],
                form,
                k,
                1.0 / temperature,
                sub_indptr,
                sub_indices,
                item_mask=mask,
                normalizer=normalizer,
                num_threads=config.num_threads,
                user_block=config.user_block,
            )
            indices[u0:u1], scores[u0:u1] = idx, sc
            if normalizer:
                lse[u0:u1], bound[u0:u1] = ls, bd
    if ids is not None and ids.size:
        indices = np.where(indices >= 0, ids[np.maximum(indices, 0)], -1)
    if not normalizer:
        return TopK(indices, scores, None, temperature)
    return TopK(indices, scores, lse, temperature, bound)


def _worth_compacting(n_eligible: int, n_items: int, n_users: int) -> bool:
    """Whether gathering the eligible rows beats scanning the catalogue with a mask (see above)."""
    fraction = COMPACT_FRACTION if n_users >= FEW_USERS else COMPACT_FRACTION_FEW_USERS
    return n_eligible == 0 or (n_items >= _COMPACT_MIN_ITEMS and n_eligible <= fraction * n_items)


def _compact(index: ItemIndex, ids: np.ndarray, config: BlockConfig) -> _Catalogue:
    """A one-off catalogue of the rows ``ids`` (ascending) of a host index."""
    items = np.ascontiguousarray(np.asarray(index.items)[ids])
    prepared = index.backend.prepare_items(items, BlockConfig(item_block=config.item_block), persistent=False)
    return _Catalogue(index.backend, prepared, int(ids.shape[0]), index.dim)


def _remap_exclusion(excl, ids: np.ndarray, n_items: int):
    """Exclusion CSR in the compact catalogue's id space (ineligible entries dropped; rows stay sorted)."""
    indptr, indices = excl
    if indices.size == 0:
        return excl
    where = np.full(n_items, -1, dtype=np.int64)
    where[ids] = np.arange(ids.shape[0], dtype=np.int64)
    mapped = where[indices]
    keep = mapped >= 0
    kept_before = np.zeros(indices.shape[0] + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return kept_before[indptr], np.ascontiguousarray(mapped[keep])


def _chunks(n_users: int, chunk: int, progress):
    """User ranges [u0, u1) of one backend call each; a tqdm bar only when one is asked for."""
    if not progress:
        for u0 in range(0, n_users, chunk):
            yield u0, min(u0 + chunk, n_users)
        return
    from tqdm.auto import tqdm

    with tqdm(total=n_users, unit="user", desc="topk") as bar:
        for u0 in range(0, n_users, chunk):
            u1 = min(u0 + chunk, n_users)
            yield u0, u1
            bar.update(u1 - u0)


def _run_host(users, cat: _Catalogue, k, excl, temperature, config, progress, mask, normalizer):
    """The CPU backends: float32 host arrays, outputs written in place chunk by chunk."""
    n_users, n_items = users.shape[0], cat.n_items
    excl_indptr, excl_indices = excl
    # Kernels never need more than I slots; the rest is padding, put in place here. With k <= I every
    # slot and normaliser is written by a kernel (the contract), so the outputs need no fill.
    k_eff = min(k, n_items)
    if k_eff == k:
        indices = np.empty((n_users, k), dtype=np.int64)
        scores = np.empty((n_users, k), dtype=np.float32)
        lse = np.empty(n_users, dtype=np.float64)
    else:
        indices = np.full((n_users, k), -1, dtype=np.int64)
        scores = np.full((n_users, k), -np.inf, dtype=np.float32)
        lse = np.full(n_users, -np.inf, dtype=np.float64)
    if not (n_users and k_eff):
        return indices, scores, lse
    extra = {} if mask is None and normalizer else {"item_mask": mask, "normalizer": normalizer}
    chunk = max(_MIN_CHUNK_USERS, _CHUNK_MACS // max(1, n_items * cat.dim))
    for u0, u1 in _chunks(n_users, chunk, progress):
        if u0 == 0 and u1 == n_users:
            sub_indptr, sub_indices = excl_indptr, excl_indices
        else:
            sub_indptr, sub_indices = validation.exclusion_range(excl_indptr, excl_indices, u0, u1)
        if k_eff == k:  # row slices of C-ordered outputs are contiguous: write in place
            out_idx, out_scores = indices[u0:u1], scores[u0:u1]
        else:
            out_idx = np.empty((u1 - u0, k_eff), dtype=np.int64)
            out_scores = np.empty((u1 - u0, k_eff), dtype=np.float32)
        cat.backend.topk_into(  # type: ignore[attr-defined]
            users[u0:u1],
            cat.prepared,
            k_eff,
            1.0 / temperature,
            sub_indptr,
            sub_indices,
            config,
            out_idx,
            out_scores,
            lse[u0:u1],
            **extra,
        )
        if k_eff != k:
            indices[u0:u1, :k_eff] = out_idx
            scores[u0:u1, :k_eff] = out_scores
    return indices, scores, lse


def _run_arrays(users, cat: _Catalogue, k, excl, temperature, config, progress, mask, normalizer):
    """A GPU-capable backend (cuda, cupy, torch): the data stays in its array family.

    Validation happened where the arrays live (no host copy of device inputs); the exclusion CSR and the
    item mask are host arrays (small beside the embeddings), moved by the backend.
    """
    backend = cast(ArrayBackend, cat.backend)
    n_users, n_items = int(users.shape[0]), cat.n_items
    excl_indptr, excl_indices = excl
    users = backend.adopt_users(users, cat.prepared)
    fam = _arrays.family(users)
    indices = _arrays.full(fam, (n_users, k), -1, "int64", like=users)
    scores = _arrays.full(fam, (n_users, k), float("-inf"), "float32", like=users)
    lse = _arrays.full(fam, (n_users,), float("-inf"), "float64", like=users)
    k_eff = min(k, n_items)  # kernels never need more than I slots; the padding is already in place
    if not (n_users and k_eff):
        return indices, scores, lse
    extra = {} if mask is None and normalizer else {"item_mask": mask, "normalizer": normalizer}
    chunk = backend.chunk_users(n_items, cat.dim, cat.prepared) or max(
        _MIN_CHUNK_USERS, _CHUNK_MACS // max(1, n_items * cat.dim)
    )
    for u0, u1 in _chunks(n_users, chunk, progress):
        sub_indptr, sub_indices = validation.exclusion_range(excl_indptr, excl_indices, u0, u1)
        idx, sc, ls = backend.topk_arrays(
            users[u0:u1], cat.prepared, k_eff, 1.0 / temperature, sub_indptr, sub_indices, config, **extra
        )
        indices[u0:u1, :k_eff] = idx
        scores[u0:u1, :k_eff] = sc
        lse[u0:u1] = ls
    return indices, scores, lse
