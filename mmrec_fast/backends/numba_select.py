"""Numba sort keys and their selection: the (score, index) key, sorting and k-th selection of unique
uint64 keys (own implementations: faster to compile than ``np.sort`` / ``np.partition``, and a radix
sort for long lists). The key is the bitwise complement of :func:`mmrec_fast._keys.encode`'s
(``tests/test_keys.py`` checks they agree).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_intrinsics import _bits_f32, _f32_bits

_F32_ZERO = np.float32(0.0)
_U32_SIGN = np.uint32(0x80000000)
_U64_SHIFT = np.uint64(32)
_U64_LOW = np.uint64(0xFFFFFFFF)

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
