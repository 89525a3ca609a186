"""Numba backend: the blocked top-k / log-sum-exp kernel of ``base.py`` compiled with ``@njit``.

Kernels live in :mod:`mmrec_fast.backends.numba_kernels` (``cache=True``: the first call in a fresh
environment compiles them, later processes load them from ``__pycache__``).

Default block sizes
-------------------
``item_block``: 1024 items, halved (down to 128) while one packed block (d x item_block float32) would
exceed 1 MiB, i.e. 1024 up to d = 256, 512 at d = 512. The packed block is re-read from L2 once per
group of 4 users; the 4 tile rows plus 4 panel rows the innermost loop touches (32 KiB at 1024) stay in
L1, and the 4 x item_block score rows are post-processed (exclusion, max, exp-sum, threshold scan) while
still in L1. Measured on the 2-core AVX-512 development VM, 1 thread: at d = 64, 1024 beat 512 and 2048
by 5-10 %; at d = 256 / 512, 512-1024 beat 128-256 by 15-40 %. Never more than the catalogue (rounded up
to 16).

``user_block``: 64 users share one pass over the packed items (so the item matrix streams from L3 /
DRAM U / 64 times). When there are fewer users than ``64 x threads`` it shrinks (multiple of 4, at least
4) so every thread gets a block, and it shrinks when the candidate buffers (user_block x capacity x 8
bytes) would exceed 8 MiB (very large k). Results do not depend on ``user_block`` or on the thread count
(scores are summed sequentially over d per (user, item); the per-block lse pieces depend only on
``item_block``).

Working memory per thread: 4 x item_block float32 (tile) + user_block x capacity uint64 (candidates) +
a few user_block vectors; independent of U x I. ``prepare_items`` holds one padded copy of the items.
"""

from __future__ import annotations

import numba
import numpy as np

from .base import BlockConfig
from .numba_kernels import GROUP, MAX_ITEMS, PANEL, pack_items, topk_blocked

__all__ = ["BACKEND", "NumbaBackend", "NumbaPreparedItems", "describe"]

DEFAULT_USER_BLOCK = 8 * GROUP  # 96
DEFAULT_ITEM_BLOCK = 1024
_PANEL_BYTES = 1024 * 1024
_MIN_ITEM_BLOCK = 128
_BUFFER_BYTES = 8 * 1024 * 1024
# Item sharding for few users: up to this many users "per item pass" are made up by shards.
_SHARD_USERS = 1024
_MAX_SHARDS = 64
_MIN_BLOCKS_PER_SHARD = 4
_SHARD_BYTES = 64 * 1024 * 1024
_NO_MASK = np.zeros(0, dtype=np.uint8)


def default_item_block(n_items: int, dim: int) -> int:
    """Items per block when ``BlockConfig.item_block`` is None (see the module docstring)."""
    block = DEFAULT_ITEM_BLOCK
    while block > _MIN_ITEM_BLOCK and block * max(dim, 1) * 4 > _PANEL_BYTES:
        block //= 2
    return max(1, min(block, -(-max(n_items, 1) // PANEL) * PANEL))


def item_shards(n_users: int, n_items: int, item_block: int, k: int) -> int:
    """How many contiguous shards the item blocks are split into (see the module docstring).

    Depends only on U, I, the item block and k -- never on the thread count -- so results (whose
    log-normaliser is folded per shard) do not depend on the machine's cores."""
    n_blocks = -(-max(n_items, 1) // item_block)
    shards = -(-_SHARD_USERS // max(n_users, 1))
    shards = min(shards, _MAX_SHARDS, max(1, n_blocks // _MIN_BLOCKS_PER_SHARD))
    shards = min(shards, max(1, _SHARD_BYTES // (8 * max(n_users, 1) * k)))
    return max(1, shards)


def default_user_block(n_users: int, n_threads: int, capacity: int, n_shards: int = 1) -> int:
    """Users per block when ``BlockConfig.user_block`` is None (see the module docstring)."""
    block = DEFAULT_USER_BLOCK
    if n_shards == 1:  # every thread should get a block of users
        per_thread = -(-max(n_users, 1) // max(n_threads, 1))
        block = min(block, -(-per_thread // 4) * 4)
    block = min(block, -(-max(n_users, 1) // 4) * 4)
    block = min(block, max(4, (_BUFFER_BYTES // (8 * capacity)) // 4 * 4))
    return max(1, block)


class NumbaPreparedItems:
    """Items packed as float32 (ceil(I / 32), d, 32) panels (see ``numba_kernels``)."""

    __slots__ = ("packed", "n_items", "dim", "item_block")

    def __init__(self, packed: np.ndarray, n_items: int, dim: int, item_block: int):
        self.packed = packed
        self.n_items = n_items
        self.dim = dim
        self.item_block = item_block

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes)

    def __repr__(self) -> str:
        return (
            f"NumbaPreparedItems(n_items={self.n_items}, dim={self.dim}, "
            f"item_block={self.item_block}, panels={self.packed.shape[0]})"
        )


class NumbaBackend:
    """``Backend`` protocol implementation on Numba (``parallel=True``, ``prange`` over tasks)."""

    name = "numba"

    # -- items ---------------------------------------------------------------------------------------
    def prepare_items(self, items: np.ndarray, config: BlockConfig, *, persistent: bool = True) -> NumbaPreparedItems:
        # persistent=False also packs a full copy: the micro-kernel needs the panel layout, and packing
        # each item block once per user block instead would cost more than the copy.
        items = np.ascontiguousarray(items, dtype=np.float32)
        n_items, dim = items.shape
        if n_items >= MAX_ITEMS:
            raise ValueError(f"the numba backend supports fewer than 2**32 items, got {n_items}")
        item_block = config.item_block if config.item_block is not None else default_item_block(n_items, dim)
        item_block = max(1, min(int(item_block), n_items))
        packed = pack_items(items)
        # The kernels never write to it, but it stays flagged writeable: Numba types read-only arrays
        # differently and would compile (and cache) a second specialisation of every kernel.
        return NumbaPreparedItems(packed, int(n_items), int(dim), int(item_block))

    # -- kernel --------------------------------------------------------------------------------------
    def topk_into(
        self,
        users,
        prepared,
        k,
        inv_temperature,
        excl_indptr,
        excl_indices,
        config,
        out_indices,
        out_scores,
        out_lse,
        *,
        item_mask=None,
        normalizer=True,
    ) -> None:
        if not isinstance(prepared, NumbaPreparedItems):
            raise TypeError(f"expected NumbaPreparedItems from prepare_items, got {type(prepared).__name__}")
        # The packing does not depend on the block size: any item_block works on the same panels.
        item_block = int(config.item_block) if config.item_block is not None else prepared.item_block
        # A block larger than the catalogue is the catalogue (and keeps the int64 tile arithmetic small).
        item_block = max(1, min(item_block, prepared.n_items))
        # Read-only inputs would make Numba compile (and cache) a second specialisation of every
        # kernel; these copies are O(U d + nnz), negligible next to the O(U I d) scan.
        if not users.flags.writeable:
            users = users.copy()
        if not excl_indptr.flags.writeable:
            excl_indptr = excl_indptr.copy()
        if not excl_indices.flags.writeable:
            excl_indices = excl_indices.copy()
        # One specialisation: "no mask" is an empty (writeable) uint8 array.
        if item_mask is None:
            item_mask = _NO_MASK
        elif not item_mask.flags.writeable:
            item_mask = item_mask.copy()
        k = int(k)
        capacity = int(config.buffer_capacity(k))
        n_users = users.shape[0]
        n_items = prepared.n_items
        if n_users == 0:
            return
        if n_items == 0:
            out_indices[...] = -1
            out_scores[...] = -np.inf
            out_lse[...] = -np.inf
            return

        previous = numba.get_num_threads()
        n_threads = previous
        if config.num_threads is not None:
            n_threads = max(1, min(int(config.num_threads), numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
        n_shards = item_shards(n_users, n_items, item_block, k)
        user_block = (
            min(int(config.user_block), n_users)
            if config.user_block is not None
            else default_user_block(n_users, n_threads, capacity, n_shards)
        )
        try:
            if n_threads != previous:
                numba.set_num_threads(n_threads)
            topk_blocked(
                users,
                prepared.packed,
                n_items,
                item_block,
                k,
                float(inv_temperature),
                excl_indptr,
                excl_indices,
                item_mask,
                bool(normalizer),
                user_block,
                capacity,
                n_shards,
                out_indices,
                out_scores,
                out_lse,
            )
        finally:
            if n_threads != previous:
                numba.set_num_threads(previous)

    # -- info ----------------------------------------------------------------------------------------
    def describe(self) -> str:
        layer: str
        try:
            layer = numba.threading_layer()
        except ValueError:  # no parallel kernel has run yet in this process
            layer = f"{numba.config.THREADING_LAYER} (not initialised yet)"  # type: ignore[attr-defined]
        return f"numba {numba.__version__} ({numba.get_num_threads()} threads, threading layer: {layer})"


BACKEND = NumbaBackend()


def describe() -> str:
    """One line for ``mmrec_fast.available_backends()``, e.g. "numba 0.68.1 (2 threads, threading layer: omp)"."""
    return BACKEND.describe()
