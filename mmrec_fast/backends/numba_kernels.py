"""Numba kernels of the blocked top-k / log-sum-exp scan (see ``base.py`` for the contract).

Layout
------
``pack_items`` turns the float32 (I, d) item matrix into ``packed``, a float32 array of shape
(n_item_blocks, d, item_block): every block of ``item_block`` consecutive items transposed, so that the
score-tile loop streams contiguous rows ``packed[b, kk, :]``; the ragged last block is zero padded.

Per user block (``topk_blocked`` runs them in a ``prange``; one task = one block of users, which keeps
per-user state: exclusion cursor, running (max, sum), threshold, candidate buffer), item blocks in
ascending order, and within an item block groups of 4 users:

1. ``_score_tile``: ``tile[r, j] = sum_kk users[u + r, kk] * packed[b, kk, j]`` in float32, summed
   strictly sequentially over ``kk`` (a chain of FMAs starting from +0.0; ``fastmath={'contract'}``,
   no reassociation), so a score never depends on the thread, the user block or the item block it
   was computed in. Register blocking: 4 users x 4 ``kk`` steps per pass over the 4 tile rows; the
   ``j`` loop vectorises. The 4 rows are then post-processed while they are in L1:
2. ``_exclude``: a per-user cursor walks the user's sorted CSR segment and sets the excluded
   items of this block to -inf (O(nnz) over the whole scan).
3. ``_row_max`` / ``_row_expsum``: float32 block maximum of ``x = s * inv_temperature`` (computed as
   ``max(s) * inv_temperature``; rounding is monotone so this is the same value) and float32 sum of
   ``exp(x - block_max)`` (a vectorised polynomial float32 ``exp``, ~1 ulp, exp(-inf) = 0 exactly;
   exp of arguments below -87 is flushed to 0); folded into the user's running float64
   (max, sum). A block where everything is excluded is skipped.
4. ``_scan_row``: items with ``score > threshold`` (strict) are appended, in index order, to the
   candidate buffer as uint64 sort keys ``(descending-order bits of the float32 score) << 32 | index``,
   so ascending key order is exactly (score descending, index ascending). A full buffer is reduced to
   its k smallest keys (quickselect) and the threshold becomes the k-th best score. Rows whose block
   maximum, and 64-item chunks whose maximum, do not exceed the threshold are skipped.
5. ``_finalize_row``: select k, sort (insertion sort, or LSD radix sort from 256 keys), decode, pad
   with (-1, -inf); ``lse = max + log(sum)`` or -inf when no item was eligible.

Fast-math: ``_score_tile`` and ``_exp_nonpos`` use ``contract`` (FMA); ``_row_expsum`` uses ``reassoc``
so its float32 sum vectorises (the summation order is fixed at compile time, identical for every thread
count). No kernel uses ``nnan`` / ``ninf``: -inf is meaningful (excluded items, empty rows).
Sorting and selection are written here rather than using ``np.sort`` / ``np.partition``: they compile
in a fraction of the time and the radix sort is ~3x faster for large k.

Item indices must be below 2**32 (they occupy the low half of the sort key).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

__all__ = ["pack_items", "topk_blocked", "MAX_ITEMS"]

MAX_ITEMS = 1 << 32

_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)
_F32_NEG_INF = np.float32(-np.inf)
_U32_SIGN = np.uint32(0x80000000)
_U64_SHIFT = np.uint64(32)
_U64_LOW = np.uint64(0xFFFFFFFF)


# --------------------------------------------------------------------------------------------------
# LLVM intrinsics: bit casts and maxnum (whose reduction LLVM vectorises without fast-math flags).
# --------------------------------------------------------------------------------------------------

@intrinsic
def _f32_bits(typingctx, x):
    """float32 -> its IEEE bits as uint32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@intrinsic
def _bits_f32(typingctx, x):
    """Integer bits (low 32 bits used) -> float32."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        value = args[0]
        if x.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif x.bitwidth < 32:
            value = builder.zext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(x), codegen


@intrinsic
def _fmax32(typingctx, a, b):
    """llvm.maxnum.f32 (a NaN operand is ignored; no NaN ever reaches it here)."""
    if a != types.float32 or b != types.float32:
        return None

    def codegen(context, builder, signature, args):
        f32 = ir.FloatType()
        fn = builder.module.declare_intrinsic("llvm.maxnum", [f32], ir.FunctionType(f32, [f32, f32]))
        return builder.call(fn, args)

    return types.float32(types.float32, types.float32), codegen


# --------------------------------------------------------------------------------------------------
# Sort keys: ascending uint64 order == (score descending, index ascending).
# --------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True)
def _make_key(score, index):
    bits = _f32_bits(score + _F32_ZERO)  # + 0 turns -0.0 into +0.0: equal scores, equal keys
    if bits & _U32_SIGN:
        asc = ~bits
    else:
        asc = bits | _U32_SIGN
    desc = ~asc
    return (np.uint64(desc) << _U64_SHIFT) | np.uint64(index)


@njit(cache=True, nogil=True)
def _key_score(key):
    desc = np.uint32(key >> _U64_SHIFT)
    asc = ~desc
    if asc & _U32_SIGN:
        bits = asc ^ _U32_SIGN
    else:
        bits = desc
    return _bits_f32(bits)


@njit(cache=True, nogil=True)
def _key_index(key):
    return np.int64(key & _U64_LOW)


# --------------------------------------------------------------------------------------------------
# float32 exp for arguments <= 0 (Cephes expf polynomial, ~1 ulp); exp(-inf) == 0 exactly.
# --------------------------------------------------------------------------------------------------

_EXP_LO = np.float32(-87.0)  # exp(-87) ~ 1.6e-38, still a normal float32; below: 0
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI = np.float32(0.693359375)
_LN2_LO = np.float32(-2.12194440e-4)
_HALF = np.float32(0.5)
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_I32_127 = np.int32(127)
_I32_23 = np.int32(23)


@njit(cache=True, nogil=True, fastmath={"contract"})
def _exp_nonpos(x):
    xc = x if x > _EXP_LO else _EXP_LO
    fx = np.floor(xc * _LOG2E + _HALF)
    r = xc - fx * _LN2_HI
    r = r - fx * _LN2_LO
    z = r * r
    y = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
    y = y * z + r + _F32_ONE
    scale = _bits_f32((np.int32(fx) + _I32_127) << _I32_23)
    return y * scale if x >= _EXP_LO else _F32_ZERO


# --------------------------------------------------------------------------------------------------
# Packing.
# --------------------------------------------------------------------------------------------------

def pack_items(items, item_block):
    """(I, d) float32 -> (ceil(I / item_block), d, item_block) float32, blocks transposed, zero padded.

    Plain NumPy (a strided copy is as fast as a loop here and needs no compilation)."""
    items = np.ascontiguousarray(items, dtype=np.float32)
    n_items, dim = items.shape
    item_block = int(item_block)
    n_blocks = (n_items + item_block - 1) // item_block
    # 64-byte aligned (NumPy's large allocations are only 16-byte aligned), zero filled.
    n_values = n_blocks * dim * item_block
    raw = np.zeros(n_values * 4 + 64, dtype=np.uint8)
    start = (-raw.ctypes.data) % 64
    packed = raw[start:start + n_values * 4].view(np.float32).reshape(n_blocks, dim, item_block)
    full = n_items // item_block
    if full:
        packed[:full] = items[:full * item_block].reshape(full, item_block, dim).transpose(0, 2, 1)
    if n_blocks > full:
        packed[full, :, :n_items - full * item_block] = items[full * item_block:].T
    return packed


# --------------------------------------------------------------------------------------------------
# Score tile.
# --------------------------------------------------------------------------------------------------

@njit(cache=True, nogil=True, fastmath={"contract"})
def _score_tile(users, u0, mu, panel, ncols, tile):
    """tile[u, :ncols] = users[u0 + u] @ panel[:, :ncols] for u < mu, sequential float32 sum over d."""
    dim = panel.shape[0]
    u = 0
    while u + 4 <= mu:
        t0 = tile[u]
        t1 = tile[u + 1]
        t2 = tile[u + 2]
        t3 = tile[u + 3]
        x0 = users[u0 + u]
        x1 = users[u0 + u + 1]
        x2 = users[u0 + u + 2]
        x3 = users[u0 + u + 3]
        for j in range(ncols):
            t0[j] = _F32_ZERO
            t1[j] = _F32_ZERO
            t2[j] = _F32_ZERO
            t3[j] = _F32_ZERO
        kk = 0
        while kk + 4 <= dim:
            a00 = x0[kk]
            a01 = x0[kk + 1]
            a02 = x0[kk + 2]
            a03 = x0[kk + 3]
            a10 = x1[kk]
            a11 = x1[kk + 1]
            a12 = x1[kk + 2]
            a13 = x1[kk + 3]
            a20 = x2[kk]
            a21 = x2[kk + 1]
            a22 = x2[kk + 2]
            a23 = x2[kk + 3]
            a30 = x3[kk]
            a31 = x3[kk + 1]
            a32 = x3[kk + 2]
            a33 = x3[kk + 3]
            p0 = panel[kk]
            p1 = panel[kk + 1]
            p2 = panel[kk + 2]
            p3 = panel[kk + 3]
            for j in range(ncols):
                q0 = p0[j]
                q1 = p1[j]
                q2 = p2[j]
                q3 = p3[j]
                t0[j] = (((t0[j] + a00 * q0) + a01 * q1) + a02 * q2) + a03 * q3
                t1[j] = (((t1[j] + a10 * q0) + a11 * q1) + a12 * q2) + a13 * q3
                t2[j] = (((t2[j] + a20 * q0) + a21 * q1) + a22 * q2) + a23 * q3
                t3[j] = (((t3[j] + a30 * q0) + a31 * q1) + a32 * q2) + a33 * q3
            kk += 4
        while kk < dim:
            a0 = x0[kk]
            a1 = x1[kk]
            a2 = x2[kk]
            a3 = x3[kk]
            p0 = panel[kk]
            for j in range(ncols):
                q0 = p0[j]
                t0[j] = t0[j] + a0 * q0
                t1[j] = t1[j] + a1 * q0
                t2[j] = t2[j] + a2 * q0
                t3[j] = t3[j] + a3 * q0
            kk += 1
        u += 4
    while u < mu:
        t0 = tile[u]
        x0 = users[u0 + u]
        for j in range(ncols):
            t0[j] = _F32_ZERO
        kk = 0
        while kk + 4 <= dim:
            a0 = x0[kk]
            a1 = x0[kk + 1]
            a2 = x0[kk + 2]
            a3 = x0[kk + 3]
            p0 = panel[kk]
            p1 = panel[kk + 1]
            p2 = panel[kk + 2]
            p3 = panel[kk + 3]
            for j in range(ncols):
                t0[j] = (((t0[j] + a0 * p0[j]) + a1 * p1[j]) + a2 * p2[j]) + a3 * p3[j]
            kk += 4
        while kk < dim:
            a0 = x0[kk]
            p0 = panel[kk]
            for j in range(ncols):
                t0[j] = t0[j] + a0 * p0[j]
            kk += 1
        u += 1


# --------------------------------------------------------------------------------------------------
# Sorting / selection of unique uint64 keys (own implementations: faster to compile than
# np.sort / np.partition, and a radix sort for long lists).
# --------------------------------------------------------------------------------------------------

_SMALL = 16
_RADIX_MIN = 256
_RADIX_BITS = 11
_RADIX_SIZE = 1 << _RADIX_BITS
_RADIX_MASK = np.uint64(_RADIX_SIZE - 1)


@njit(cache=True, nogil=True)
def _insertion_sort(a, lo, hi):
    """Sort a[lo:hi] ascending in place."""
    for i in range(lo + 1, hi):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@njit(cache=True, nogil=True)
def _partition(a, lo, hi):
    """Median-of-3 partition of a[lo:hi] (hi - lo >= 3, distinct keys). Returns p with
    a[lo:p] < a[p] < a[p + 1:hi]."""
    mid = lo + (hi - lo) // 2
    last = hi - 1
    if a[mid] < a[lo]:
        t = a[mid]
        a[mid] = a[lo]
        a[lo] = t
    if a[last] < a[lo]:
        t = a[last]
        a[last] = a[lo]
        a[lo] = t
    if a[last] < a[mid]:
        t = a[last]
        a[last] = a[mid]
        a[mid] = t
    pivot = a[mid]
    a[mid] = a[last - 1]
    a[last - 1] = pivot
    i = lo
    j = last - 1
    while True:
        i += 1
        while a[i] < pivot:
            i += 1
        j -= 1
        while pivot < a[j]:
            j -= 1
        if i >= j:
            break
        t = a[i]
        a[i] = a[j]
        a[j] = t
    a[last - 1] = a[i]
    a[i] = pivot
    return i


@njit(cache=True, nogil=True)
def _radix_sort(a, n):
    """LSD radix sort of a[:n] (11-bit digits; passes whose digit is constant are skipped)."""
    tmp = np.empty(n, dtype=np.uint64)
    counts = np.empty(_RADIX_SIZE, dtype=np.int64)
    src = a
    dst = tmp
    in_tmp = False
    for shift in range(0, 64, _RADIX_BITS):
        sh = np.uint64(shift)
        for d in range(_RADIX_SIZE):
            counts[d] = 0
        for i in range(n):
            counts[(src[i] >> sh) & _RADIX_MASK] += 1
        if counts[(src[0] >> sh) & _RADIX_MASK] == n:
            continue
        total = 0
        for d in range(_RADIX_SIZE):
            c = counts[d]
            counts[d] = total
            total += c
        for i in range(n):
            v = src[i]
            d = (v >> sh) & _RADIX_MASK
            dst[counts[d]] = v
            counts[d] += 1
        src, dst = dst, src
        in_tmp = not in_tmp
    if in_tmp:
        for i in range(n):
            a[i] = src[i]


@njit(cache=True, nogil=True)
def _sort_keys(a, n):
    """Sort a[:n] ascending in place."""
    if n >= _RADIX_MIN:
        _radix_sort(a, n)
    else:
        _insertion_sort(a, 0, n)


@njit(cache=True, nogil=True)
def _select_keys(a, n, kth):
    """Quickselect: reorder a[:n] so that a[:kth] < a[kth] < a[kth + 1:n]."""
    lo = 0
    hi = n
    budget = 8
    m = n
    while m > 1:
        budget += 2
        m >>= 1
    while hi - lo > _SMALL:
        if budget == 0:  # pathological pivots: fall back to sorting what is left
            _radix_sort(a[lo:hi], hi - lo)
            return
        budget -= 1
        p = _partition(a, lo, hi)
        if p == kth:
            return
        if p < kth:
            lo = p + 1
        else:
            hi = p
    _insertion_sort(a, lo, hi)


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
    m = _F32_NEG_INF
    for j in range(n):
        m = _fmax32(m, row[j])
    return m


@njit(cache=True, nogil=True, fastmath={"reassoc"})
def _row_expsum(row, n, inv_temperature, block_max):
    # reassoc lets the float32 sum vectorise; no "contract" here, so x = s * inv_temperature is a
    # rounded float32 product (not fused into the subtraction), as the contract specifies.
    total = _F32_ZERO
    for j in range(n):
        total += _exp_nonpos(row[j] * inv_temperature - block_max)
    return total


_SCAN_CHUNK = 64


@njit(cache=True, nogil=True)
def _chunk_max(row, lo, hi):
    m = _F32_NEG_INF
    for j in range(lo, hi):
        m = _fmax32(m, row[j])
    return m


@njit(cache=True, nogil=True)
def _scan_row(row, n, j0, k, threshold, keys, count):
    """Append items with score > threshold (in index order); prune a full buffer.

    Chunks of ``_SCAN_CHUNK`` scores whose (vectorised) maximum does not exceed the current threshold
    are skipped. Returns (count, threshold)."""
    capacity = keys.shape[0]
    for lo in range(0, n, _SCAN_CHUNK):
        hi = min(lo + _SCAN_CHUNK, n)
        if not _chunk_max(row, lo, hi) > threshold:
            continue
        for j in range(lo, hi):
            s = row[j]
            if s > threshold:
                keys[count] = _make_key(s, j0 + j)
                count += 1
                if count == capacity:
                    _select_keys(keys, count, k - 1)
                    count = k
                    threshold = _key_score(keys[k - 1])
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
def _user_block(bu, users, packed, n_items, k, inv_temperature, excl_indptr, excl_indices,
                user_block, capacity, out_indices, out_scores, out_lse):
    n_users = users.shape[0]
    n_blocks = packed.shape[0]
    item_block = packed.shape[2]
    u0 = bu * user_block
    mu = min(user_block, n_users - u0)

    tile = np.empty((4, item_block), dtype=np.float32)
    keys = np.empty((mu, capacity), dtype=np.uint64)
    count = np.zeros(mu, dtype=np.int64)
    threshold = np.full(mu, _F32_NEG_INF, dtype=np.float32)
    cursor = np.empty(mu, dtype=np.int64)
    run_max = np.full(mu, -np.inf, dtype=np.float64)
    run_sum = np.zeros(mu, dtype=np.float64)
    for u in range(mu):
        cursor[u] = excl_indptr[u0 + u]

    for b in range(n_blocks):
        j0 = b * item_block
        nv = min(item_block, n_items - j0)
        ncols = min(item_block, (nv + 15) // 16 * 16)
        panel = packed[b]
        for g in range(0, mu, 4):
            mg = min(4, mu - g)
            _score_tile(users, u0 + g, mg, panel, ncols, tile)
            for r in range(mg):
                u = g + r
                row = tile[r]
                cursor[u] = _exclude(row, j0, j0 + nv, excl_indices, cursor[u], excl_indptr[u0 + u + 1])
                raw_max = _row_max(row, nv)
                if raw_max == _F32_NEG_INF:
                    continue  # every item of this block is excluded for this user
                block_max = raw_max * inv_temperature
                block_sum = _row_expsum(row, nv, inv_temperature, block_max)
                bm = np.float64(block_max)
                if bm > run_max[u]:
                    run_sum[u] = run_sum[u] * np.exp(run_max[u] - bm) + np.float64(block_sum)
                    run_max[u] = bm
                else:
                    run_sum[u] += np.float64(block_sum) * np.exp(bm - run_max[u])
                if raw_max > threshold[u]:
                    c, t = _scan_row(row, nv, j0, k, threshold[u], keys[u], count[u])
                    count[u] = c
                    threshold[u] = t

    for u in range(mu):
        _finalize_row(keys[u], count[u], k, out_indices[u0 + u], out_scores[u0 + u])
        if run_max[u] == -np.inf:
            out_lse[u0 + u] = -np.inf
        else:
            out_lse[u0 + u] = run_max[u] + np.log(run_sum[u])


@njit(cache=True, nogil=True, parallel=True)
def topk_blocked(users, packed, n_items, k, inv_temperature, excl_indptr, excl_indices, user_block,
                 capacity, out_indices, out_scores, out_lse):
    """Fill out_indices (U, k) int64, out_scores (U, k) float32, out_lse (U,) float64.

    ``packed`` comes from :func:`pack_items`; ``inv_temperature`` is a float32; ``capacity >= k + 1``.
    """
    n_users = users.shape[0]
    n_user_blocks = (n_users + user_block - 1) // user_block
    for bu in prange(n_user_blocks):
        # (the prange index is unsigned; cast it so _user_block is compiled once, for int64)
        _user_block(np.int64(bu), users, packed, n_items, k, inv_temperature, excl_indptr, excl_indices,
                    user_block, capacity, out_indices, out_scores, out_lse)
