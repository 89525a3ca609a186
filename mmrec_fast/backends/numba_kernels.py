"""Numba kernels of the blocked top-k / log-sum-exp scan (see ``base.py`` for the contract).

Built from :mod:`numba_intrinsics` (bit casts, vector IR, the micro-kernel, float32 exp) and
:mod:`numba_select` (sort keys, sorting and selection); this module holds packing, the per-row steps
and the driver.

Layout
------
``pack_items`` turns the float32 (I, d) item matrix into ``packed``, a float32 array of shape
(ceil(I / 32), d, 32): panels of 32 consecutive items, each transposed (``packed[p, kk, :]`` holds
feature ``kk`` of items ``32 p .. 32 p + 31``), the last one zero padded. The layout does not depend on
the block sizes: an item block ``[j0, j0 + nv)`` is scored panel by panel (``j0 // 32`` to
``(j0 + nv - 1) // 32``), and its row of scores starts at column ``j0 % 32`` of the tile.

Work is split into tasks (``topk_blocked`` runs them in a ``prange``): one task = one block of users x one
shard of the item blocks (the shard count depends only on U, I, k and the item block, never on the
thread count; it is 1 unless there are few users). Per task, item blocks in ascending order:

1. Score tile: ``_micro`` (LLVM IR written by hand, 512-bit vectors) computes ``_NU`` users x 32 items:
   ``2 _NU`` zmm accumulators, per feature ``kk`` two aligned panel loads, ``_NU`` broadcasts and
   ``2 _NU`` FMAs. Each score is an in-order float32 FMA chain over ``kk`` starting from +0.0 (no
   reassociation), so a score never depends on the thread, the user block or the item block it was
   computed in. Panels are the outer loop and user groups the inner one: one 8 KiB panel (d = 64)
   stays in L1 while the block's users (a zero-padded local copy) stream past it; the
   (user_block x item_block) tile stays in L2.
2. Per user row (while the tile is in L2): ``_exclude`` (a per-user cursor walks the user's sorted CSR
   segment and sets excluded items to -inf), ``_row_max`` / ``_row_expsum``: float32 block maximum ``m`` of the
   raw scores and float32 sum of ``exp((s - m) * inv_t32)`` (difference first; a vectorised polynomial
   float32 ``exp``, ~1 ulp, exp(-inf) = 0 exactly; arguments below -87 flush to 0), folded into the
   user's running float64 (``m * inv_temperature``, sum). A block where everything is excluded is skipped.
3. ``_scan_row``: 16 scores at a time are compared with the running threshold (one vector compare ->
   bit mask); only set bits are visited, in index order, and appended to the candidate buffer as uint64
   sort keys ``(descending-order bits of the float32 score) << 32 | index`` -- ascending key order is
   exactly (score descending, index ascending). A full buffer is reduced to its k smallest keys
   (quickselect) and the threshold becomes the k-th best score; after the first block with at least k
   candidates the buffer is also pruned, so the threshold leaves -inf early.
4. ``_finalize_row``: select k, sort (insertion sort, or LSD radix sort from 256 keys), decode, pad
   with (-1, -inf); ``lse = max + log(sum)`` or -inf when no item was eligible. With several shards each
   task leaves its k best keys and (max, sum) per user, and ``_merge_user`` selects the k best of the
   shards' keys and folds the (max, sum) pairs in shard order (float64), so the result is exact and
   independent of the thread count.

512-bit vectors: LLVM prefers 256-bit vectors on this CPU family and treats 512-bit ones as illegal
unless a function carries ``"min-legal-vector-width"="512"``; ``_zmm()`` adds that attribute and
``"prefer-vector-width"="512"`` to the function being compiled (used by every kernel function; the
vectorised loops -- max, exp sum, exclusion -- then use zmm too).

Fast-math: ``_exp_nonpos`` uses ``contract`` (FMA); ``_row_expsum`` uses ``reassoc`` so its float32 sum
vectorises (the summation order is fixed at compile time, identical for every thread count). No kernel
uses ``nnan`` / ``ninf``: -inf is meaningful (excluded items, empty rows). Sorting and selection are
written here rather than using ``np.sort`` / ``np.partition``: they compile in a fraction of the time
and the radix sort is ~3x faster for large k.

Item indices must be below 2**32 (they occupy the low half of the sort key).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .numba_intrinsics import GROUP, PANEL, _ctz64, _exp_nonpos, _fmax32, _gt_mask16, _micro, _zmm
from .numba_select import _key_index, _key_score, _make_key, _select_keys, _sort_keys

__all__ = ["pack_items", "topk_blocked", "MAX_ITEMS", "PANEL", "GROUP"]

MAX_ITEMS = 1 << 32

_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)
_F32_NEG_INF = np.float32(-np.inf)
_F32_TINY = np.float32(np.finfo(np.float32).tiny)
_U32_SIGN = np.uint32(0x80000000)
_U64_SHIFT = np.uint64(32)
_U64_LOW = np.uint64(0xFFFFFFFF)

_NU = GROUP


# --------------------------------------------------------------------------------------------------
# Packing.
# --------------------------------------------------------------------------------------------------


def pack_items(items):
    """(I, d) float32 -> (ceil(I / 32), d, 32) float32 panels, 64-byte aligned, last one zero padded.

    Plain NumPy (a strided copy is as fast as a compiled loop here and needs no compilation)."""
    items = np.ascontiguousarray(items, dtype=np.float32)
    n_items, dim = items.shape
    n_panels = (n_items + PANEL - 1) // PANEL
    n_values = n_panels * dim * PANEL
    raw = np.empty(n_values * 4 + 64, dtype=np.uint8)  # NumPy's large allocations are 16-byte aligned
    start = (-raw.ctypes.data) % 64
    packed = raw[start : start + n_values * 4].view(np.float32).reshape(n_panels, dim, PANEL)
    full = n_items // PANEL
    if full:
        packed[:full] = items[: full * PANEL].reshape(full, PANEL, dim).transpose(0, 2, 1)
    if n_panels > full:
        rest = n_items - full * PANEL
        packed[full, :, :rest] = items[full * PANEL :].T
        packed[full, :, rest:] = 0.0
    return packed


# --------------------------------------------------------------------------------------------------
# Per-row steps.
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _exclude(row, j0, j1, excl_indices, cursor, stop):
    """Set row[idx - j0] = -inf for the user's excluded idx in [j0, j1); return the advanced cursor."""
    c = cursor
    while c < stop:
        idx = excl_indices[c]
        if idx >= j1:
            break
        row[idx - j0] = _F32_NEG_INF
        c += 1
    return c


@njit(cache=True, nogil=True)
def _row_max(row, n):
    _zmm()
    m = _F32_NEG_INF
    for j in range(n):
        m = _fmax32(m, row[j])
    return m


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _row_expsum(row, n, inv_t32, raw_max):
    # reassoc lets the float32 sum vectorise. The difference comes first: (s - max) * inv_t keeps the
    # exponent's precision at small temperatures, where s * inv_t - max * inv_t would lose it.
    _zmm()
    total = _F32_ZERO
    for j in range(n):
        total += _exp_nonpos((row[j] - raw_max) * inv_t32)
    return total


@njit(cache=True, nogil=True)
def _prune(keys, count, k):
    """Keep the k best of keys[:count] (count >= k); return the new threshold (the k-th best score)."""
    if count > k:
        _select_keys(keys, count, k - 1)
    else:
        best = keys[0]  # count == k: the threshold is the largest key's score
        for t in range(1, k):
            if keys[t] > best:
                best = keys[t]
        return _key_score(best)
    return _key_score(keys[k - 1])


@njit(cache=True, nogil=True)
def _scan_row(row, n, j0, k, threshold, keys, count):
    """Append items with score > threshold (in index order); prune a full buffer.

    16 scores at a time are compared with the threshold in one vector compare; only the set bits of
    the mask are visited (re-checked against a threshold raised meanwhile). ``row`` must be followed
    by at least 15 readable floats. Returns (count, threshold)."""
    capacity = keys.shape[0]
    for lo in range(0, n, 16):
        m = _gt_mask16(row, lo, threshold)
        if m == 0:
            continue
        if n - lo < 16:
            m &= (np.int64(1) << (n - lo)) - 1
        while m != 0:
            t = _ctz64(m)
            m &= m - 1
            s = row[lo + t]
            if s > threshold:
                keys[count] = _make_key(s, j0 + lo + t)
                count += 1
                if count == capacity:
                    threshold = _prune(keys, count, k)
                    count = k
    return count, threshold


@njit(cache=True, nogil=True)
def _finalize_row(keys, count, k, out_idx, out_sc):
    m = count
    if count > k:
        _select_keys(keys, count, k - 1)
        m = k
    _sort_keys(keys, m)
    for t in range(m):
        out_idx[t] = _key_index(keys[t])
        out_sc[t] = _key_score(keys[t])
    for t in range(m, k):
        out_idx[t] = -1
        out_sc[t] = _F32_NEG_INF


# --------------------------------------------------------------------------------------------------
# Driver.
# --------------------------------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _task(
    bu,
    shard,
    n_shards,
    users,
    packed,
    n_items,
    item_block,
    k,
    inv_temperature,
    excl_indptr,
    excl_indices,
    item_mask,
    normalizer,
    user_block,
    capacity,
    out_indices,
    out_scores,
    out_lse,
    part_keys,
    part_count,
    part_max,
    part_sum,
):
    """Users [bu * user_block, +user_block) x item blocks of shard ``shard`` (of ``n_shards``).

    ``item_mask``: uint8 (I,) global eligibility (0 = never listed, not in the normaliser), or an empty
    array for none. ``normalizer`` False skips the exp-sum (``out_lse`` left -inf)."""
    _zmm()
    inv_t32 = max(np.float32(inv_temperature), _F32_TINY)  # see backends.base.scale_factor32
    n_users, dim = users.shape
    n_blocks = (n_items + item_block - 1) // item_block
    b_lo = shard * n_blocks // n_shards
    b_hi = (shard + 1) * n_blocks // n_shards
    u0 = bu * user_block
    mu = min(user_block, n_users - u0)
    mup = (mu + _NU - 1) // _NU * _NU
    width = (item_block + PANEL - 1) // PANEL * PANEL + 2 * PANEL

    ub = np.zeros((mup, dim), dtype=np.float32)
    for u in range(mu):
        for kk in range(dim):
            ub[u, kk] = users[u0 + u, kk]
    tile = np.empty((mup, width), dtype=np.float32)
    keys = np.empty((mu, capacity), dtype=np.uint64)
    count = np.zeros(mu, dtype=np.int64)
    threshold = np.full(mu, _F32_NEG_INF, dtype=np.float32)
    cursor = np.empty(mu, dtype=np.int64)
    run_max = np.full(mu, -np.inf, dtype=np.float64)
    run_sum = np.zeros(mu, dtype=np.float64)
    use_mask = item_mask.shape[0] > 0
    masked = np.empty(item_block if use_mask else 0, dtype=np.int64)
    j_start = b_lo * item_block
    for u in range(mu):  # first excluded item >= j_start (binary search in the sorted CSR row)
        lo = excl_indptr[u0 + u]
        hi = excl_indptr[u0 + u + 1]
        while lo < hi:
            mid = (lo + hi) // 2
            if excl_indices[mid] < j_start:
                lo = mid + 1
            else:
                hi = mid
        cursor[u] = lo

    for b in range(b_lo, b_hi):
        j0 = b * item_block
        nv = min(item_block, n_items - j0)
        p_lo = j0 // PANEL
        p_hi = (j0 + nv - 1) // PANEL
        off = j0 - p_lo * PANEL
        n_masked = 0
        if use_mask:  # this block's ineligible positions; a block without an eligible item is skipped
            for j in range(nv):
                if item_mask[j0 + j] == 0:
                    masked[n_masked] = j
                    n_masked += 1
            if n_masked == nv:
                for u in range(mu):  # the exclusion cursors skip this block's entries
                    stop = excl_indptr[u0 + u + 1]
                    while cursor[u] < stop and excl_indices[cursor[u]] < j0 + nv:
                        cursor[u] += 1
                continue
        for p in range(p_lo, p_hi + 1):
            col = (p - p_lo) * PANEL
            for g in range(0, mup, _NU):
                _micro(tile, col, ub, g, packed, p)
        for u in range(mu):
            row = tile[u, off : off + nv]
            cursor[u] = _exclude(row, j0, j0 + nv, excl_indices, cursor[u], excl_indptr[u0 + u + 1])
            for q in range(n_masked):
                row[masked[q]] = _F32_NEG_INF
            raw_max = _row_max(row, nv)
            if raw_max == _F32_NEG_INF:
                continue  # every item of this block is excluded for this user
            if normalizer:
                block_sum = _row_expsum(row, nv, inv_t32, raw_max)
                # The float64 reference is the product result.probabilities computes for the top score.
                bm = np.float64(raw_max) * inv_temperature
                if bm > run_max[u]:
                    run_sum[u] = run_sum[u] * np.exp(run_max[u] - bm) + np.float64(block_sum)
                    run_max[u] = bm
                else:
                    run_sum[u] += np.float64(block_sum) * np.exp(bm - run_max[u])
            if raw_max > threshold[u]:
                c, t = _scan_row(row, nv, j0, k, threshold[u], keys[u], count[u])
                if t == _F32_NEG_INF and c >= k:
                    t = _prune(keys[u], c, k)  # raise the threshold as soon as k candidates exist
                    c = k
                count[u] = c
                threshold[u] = t

    if n_shards == 1:
        for u in range(mu):
            _finalize_row(keys[u], count[u], k, out_indices[u0 + u], out_scores[u0 + u])
            if run_max[u] == -np.inf:
                out_lse[u0 + u] = -np.inf
            else:
                out_lse[u0 + u] = run_max[u] + np.log(run_sum[u])
    else:
        for u in range(mu):
            c = count[u]
            if c > k:
                _select_keys(keys[u], c, k - 1)
                c = k
            for t in range(c):
                part_keys[u0 + u, shard, t] = keys[u, t]
            part_count[u0 + u, shard] = c
            part_max[u0 + u, shard] = run_max[u]
            part_sum[u0 + u, shard] = run_sum[u]


@njit(cache=True, nogil=True)
def _merge_user(u, k, part_keys, part_count, part_max, part_sum, out_indices, out_scores, out_lse):
    """Exact merge of a user's shards: k best keys overall, (max, sum) folded in shard order."""
    n_shards = part_keys.shape[1]
    buf = np.empty(n_shards * k, dtype=np.uint64)
    n = 0
    best = -np.inf
    for s in range(n_shards):
        for t in range(part_count[u, s]):
            buf[n] = part_keys[u, s, t]
            n += 1
        if part_max[u, s] > best:
            best = part_max[u, s]
    _finalize_row(buf, n, k, out_indices[u], out_scores[u])
    if best == -np.inf:
        out_lse[u] = -np.inf
    else:
        total = 0.0
        for s in range(n_shards):
            if part_max[u, s] != -np.inf:
                total += part_sum[u, s] * np.exp(part_max[u, s] - best)
        out_lse[u] = best + np.log(total)


@njit(cache=True, nogil=True, parallel=True)
def topk_blocked(
    users,
    packed,
    n_items,
    item_block,
    k,
    inv_temperature,
    excl_indptr,
    excl_indices,
    item_mask,
    normalizer,
    user_block,
    capacity,
    n_shards,
    out_indices,
    out_scores,
    out_lse,
):
    """Fill out_indices (U, k) int64, out_scores (U, k) float32, out_lse (U,) float64.

    ``packed`` comes from :func:`pack_items`; ``inv_temperature`` is a float64 (1 / T); ``capacity >= k + 1``;
    ``n_shards`` (>= 1, at most the number of item blocks) splits the item blocks into contiguous
    shards scanned as separate tasks and merged exactly afterwards.
    """
    n_users = users.shape[0]
    n_user_blocks = (n_users + user_block - 1) // user_block
    if n_shards > 1:
        part_keys = np.empty((n_users, n_shards, k), dtype=np.uint64)
        part_count = np.zeros((n_users, n_shards), dtype=np.int64)
        part_max = np.empty((n_users, n_shards), dtype=np.float64)
        part_sum = np.empty((n_users, n_shards), dtype=np.float64)
    else:
        part_keys = np.empty((0, 1, 1), dtype=np.uint64)
        part_count = np.zeros((0, 1), dtype=np.int64)
        part_max = np.empty((0, 1), dtype=np.float64)
        part_sum = np.empty((0, 1), dtype=np.float64)
    n_tasks = n_user_blocks * n_shards
    for t in prange(n_tasks):
        # (the prange index is unsigned; cast it so _task is compiled once, for int64)
        task = np.int64(t)
        _task(
            task // n_shards,
            task % n_shards,
            n_shards,
            users,
            packed,
            n_items,
            item_block,
            k,
            inv_temperature,
            excl_indptr,
            excl_indices,
            item_mask,
            normalizer,
            user_block,
            capacity,
            out_indices,
            out_scores,
            out_lse,
            part_keys,
            part_count,
            part_max,
            part_sum,
        )
    if n_shards > 1:
        for u in range(n_users):  # serial: few users (a second prange would double compile time)
            _merge_user(u, k, part_keys, part_count, part_max, part_sum, out_indices, out_scores, out_lse)
