"""Prepared indexes cached by the identity of an item matrix, so per-call helpers (``recommend``,
``similar_items`` on a raw array) pack a catalogue once instead of on every call.

An entry is reused while the very same array object is alive and its fingerprint -- buffer address,
shape, strides, dtype, torch's in-place version counter, and a hash of up to 64 evenly spaced rows --
is unchanged. A model that refits produces new arrays (a new identity: a miss). Writing into the
array in place changes the sampled rows in practice but is not guaranteed to be seen: call
:func:`clear_index_cache` after editing item vectors in place.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict

import numpy as np

from . import _arrays

__all__ = ["cached_index", "clear_index_cache"]

# A few models / catalogues per process. An entry keeps its array alive (the index reads it) until it is
# evicted, so a refitted model's old item matrix lingers until then (or clear_index_cache()).
_MAX_ENTRIES = 4
_SAMPLED_ROWS = 64
_lock = threading.RLock()  # dropping an entry may free arrays: never re-entered, but cheap to be safe
_entries: OrderedDict = OrderedDict()


def _fingerprint(items):
    fam = _arrays.family(items)
    if fam == "torch":
        return ("torch", items.data_ptr(), tuple(items.shape), tuple(items.stride()), str(items.dtype), items._version)
    if fam == "cupy":
        return ("cupy", items.data.ptr, items.shape, items.strides, items.dtype.str)
    arr = np.asarray(items)
    rows = np.unique(np.linspace(0, max(arr.shape[0] - 1, 0), min(arr.shape[0], _SAMPLED_ROWS)).astype(np.int64))
    sample = hash(np.ascontiguousarray(arr[rows]).tobytes()) if arr.ndim == 2 and arr.shape[0] else 0
    return ("numpy", arr.__array_interface__["data"][0], arr.shape, arr.strides, arr.dtype.str, sample)


def cached_index(items, *, backend: str = "auto", item_block: int | None = None):
    """An :class:`~mmrec_fast.ItemIndex` of ``items``, built once per array (and backend, item block).

    Objects that cannot be weakly referenced (lists) or fingerprinted get a fresh index every call.
    """
    from .index import ItemIndex

    try:
        ref_probe = weakref.ref(items)
        fingerprint = _fingerprint(items)
    except (TypeError, ValueError, AttributeError):
        return ItemIndex(items, backend=backend, item_block=item_block)
    key = (id(items), backend, item_block)
    with _lock:
        entry = _entries.get(key)
        if entry is not None and entry[0]() is items and entry[1] == fingerprint:
            _entries.move_to_end(key)
            return entry[2]
    # Packed outside the lock (seconds for a large catalogue); a concurrent duplicate build is harmless.
    # The index reads the array without a copy of its own: an entry is dropped as soon as the array changes.
    index = ItemIndex(items, backend=backend, item_block=item_block, _copy=False)
    del ref_probe
    with _lock:
        # Entries of dead arrays (the index held a converted copy) or of arrays edited since go first.
        for stale in [k for k, e in _entries.items() if e[0]() is None or k == key]:
            del _entries[stale]
        _entries[key] = (weakref.ref(items), fingerprint, index)
        while len(_entries) > _MAX_ENTRIES:
            _entries.popitem(last=False)
    return index


def clear_index_cache() -> None:
    """Forget every cached prepared index (after editing an item matrix in place)."""
    with _lock:
        _entries.clear()
