"""Numba kernels of the blocked top-k / log-sum-exp scan (see ``base.py`` for the contract).

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
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

__all__ = ["pack_items", "topk_blocked", "MAX_ITEMS", "PANEL", "GROUP"]

MAX_ITEMS = 1 << 32

_F32_ZERO = np.float32(0.0)
_F32_ONE = np.float32(1.0)
_F32_NEG_INF = np.float32(-np.inf)
_F32_TINY = np.float32(np.finfo(np.float32).tiny)
_U32_SIGN = np.uint32(0x80000000)
_U64_SHIFT = np.uint64(32)
_U64_LOW = np.uint64(0xFFFFFFFF)

#: Items per packed panel (two 16-lane vectors).
PANEL = 32
#: Users per micro-kernel call (2 x GROUP zmm accumulators out of 32 registers).
GROUP = 12
_NU = GROUP


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
# Hand-written vector IR: 512-bit attributes, the micro-kernel, the threshold mask.
# --------------------------------------------------------------------------------------------------

_I64 = ir.IntType(64)
_F32 = ir.FloatType()
_V16 = ir.VectorType(_F32, 16)


def _allow_zmm(builder):
    # llvmlite only accepts a fixed list of attribute names; string attributes are written verbatim.
    attrs = builder.function.attributes
    set.add(attrs, '"min-legal-vector-width"="512"')
    set.add(attrs, '"prefer-vector-width"="512"')


@intrinsic
def _zmm(typingctx):
    """Let LLVM use 512-bit vectors in the calling function (no code)."""

    def codegen(context, builder, signature, args):
        _allow_zmm(builder)
        return context.get_dummy_value()

    return types.none(), codegen


def _c_array(aryty, ndim):
    return (
        isinstance(aryty, types.Array) and aryty.dtype == types.float32 and aryty.ndim == ndim and aryty.layout == "C"
    )


def _splat(builder, value):
    undef = ir.Constant(_V16, ir.Undefined)
    vec = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(vec, undef, ir.Constant(ir.VectorType(ir.IntType(32), 16), [0] * 16))


@intrinsic
def _micro(typingctx, tile, col, ub, g, packed, p):
    """tile[g + r, col + c] = ub[g + r, :] . packed[p, :, c] for r < _NU, c < 32 (in-order FMA chain)."""
    if not (
        _c_array(tile, 2)
        and _c_array(ub, 2)
        and _c_array(packed, 3)
        and isinstance(col, types.Integer)
        and isinstance(g, types.Integer)
        and isinstance(p, types.Integer)
    ):
        return None

    def codegen(context, builder, signature, args):
        _allow_zmm(builder)
        tile_a = context.make_array(signature.args[0])(context, builder, args[0])
        ub_a = context.make_array(signature.args[2])(context, builder, args[2])
        packed_a = context.make_array(signature.args[4])(context, builder, args[4])
        col_v, g_v, p_v = (context.cast(builder, args[i], signature.args[i], types.int64) for i in (1, 3, 5))
        ldt = cgutils.unpack_tuple(builder, tile_a.shape, 2)[1]
        dim = cgutils.unpack_tuple(builder, ub_a.shape, 2)[1]
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V16, [_V16] * 3), "llvm.fma.v16f32")
        c16 = ir.Constant(_I64, 16)
        c32 = ir.Constant(_I64, PANEL)
        urows = [builder.gep(ub_a.data, [builder.mul(builder.add(g_v, ir.Constant(_I64, r)), dim)]) for r in range(_NU)]
        pbase = builder.gep(packed_a.data, [builder.mul(builder.mul(p_v, dim), c32)])
        zero = ir.Constant(_V16, [0.0] * 16)
        pre = builder.block
        loop = builder.append_basic_block("micro_loop")
        done = builder.append_basic_block("micro_done")
        builder.cbranch(builder.icmp_signed(">", dim, ir.Constant(_I64, 0)), loop, done)
        builder.position_at_end(loop)
        kk = builder.phi(_I64)
        kk.add_incoming(ir.Constant(_I64, 0), pre)
        acc = []
        for _ in range(2 * _NU):
            phi = builder.phi(_V16)
            phi.add_incoming(zero, pre)
            acc.append(phi)
        prow = builder.gep(pbase, [builder.mul(kk, c32)])
        q0 = builder.load(builder.bitcast(prow, _V16.as_pointer()), align=64)
        q1 = builder.load(builder.bitcast(builder.gep(prow, [c16]), _V16.as_pointer()), align=64)
        new = []
        for r in range(_NU):
            a = _splat(builder, builder.load(builder.gep(urows[r], [kk])))
            new.append(builder.call(fma, [a, q0, acc[2 * r]]))
            new.append(builder.call(fma, [a, q1, acc[2 * r + 1]]))
        kk_next = builder.add(kk, ir.Constant(_I64, 1))
        tail = builder.block
        kk.add_incoming(kk_next, tail)
        for phi, value in zip(acc, new):
            phi.add_incoming(value, tail)
        builder.cbranch(builder.icmp_signed("<", kk_next, dim), loop, done)
        builder.position_at_end(done)
        final = []
        for value in new:  # phis first: they must open the block
            phi = builder.phi(_V16)
            phi.add_incoming(zero, pre)
            phi.add_incoming(value, tail)
            final.append(phi)
        tbase = builder.gep(tile_a.data, [builder.add(builder.mul(g_v, ldt), col_v)])
        for r in range(_NU):
            row = builder.gep(tbase, [builder.mul(ir.Constant(_I64, r), ldt)])
            builder.store(final[2 * r], builder.bitcast(row, _V16.as_pointer()), align=4)
            builder.store(final[2 * r + 1], builder.bitcast(builder.gep(row, [c16]), _V16.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.none(tile, col, ub, g, packed, p), codegen


@intrinsic
def _gt_mask16(typingctx, row, j, threshold):
    """Bit t (t < 16) set iff row[j + t] > threshold; reads 16 floats from row.data + j (the caller
    guarantees they are inside the allocation)."""
    if not (
        isinstance(row, types.Array)
        and row.dtype == types.float32
        and row.ndim == 1
        and row.layout == "C"
        and isinstance(j, types.Integer)
        and threshold == types.float32
    ):
        return None

    def codegen(context, builder, signature, args):
        row_a = context.make_array(signature.args[0])(context, builder, args[0])
        j_v = context.cast(builder, args[1], signature.args[1], types.int64)
        ptr = builder.bitcast(builder.gep(row_a.data, [j_v]), _V16.as_pointer())
        vec = builder.load(ptr, align=4)
        bits = builder.fcmp_ordered(">", vec, _splat(builder, args[2]))
        mask = builder.bitcast(bits, ir.IntType(16))
        return builder.zext(mask, _I64)

    return types.int64(row, j, threshold), codegen


@intrinsic
def _ctz64(typingctx, x):
    """Count trailing zeros of a non-zero int64."""
    if x != types.int64:
        return None

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(_I64, [_I64, ir.IntType(1)]), "llvm.cttz.i64"
        )
        return builder.call(fn, [args[0], ir.Constant(ir.IntType(1), 1)])

    return types.int64(types.int64), codegen


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
    """Users [bu * user_block, +user_block) x item blocks of shard ``shard`` (of ``n_shards``)."""
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
        for p in range(p_lo, p_hi + 1):
            col = (p - p_lo) * PANEL
            for g in range(0, mup, _NU):
                _micro(tile, col, ub, g, packed, p)
        for u in range(mu):
            row = tile[u, off : off + nv]
            cursor[u] = _exclude(row, j0, j0 + nv, excl_indices, cursor[u], excl_indptr[u0 + u + 1])
            raw_max = _row_max(row, nv)
            if raw_max == _F32_NEG_INF:
                continue  # every item of this block is excluded for this user
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
