"""Native C++ backend: the blocked engine of ``csrc/cpu`` through the ``mmrec_fast._native`` extension.

Items are packed once (:meth:`NativeBackend.prepare_items`) into 16-item panels, ``[panel][d][16]``
float32, zero padded: the layout the SIMD micro-kernel streams. The packing depends neither on the
SIMD level nor on the block sizes, so one prepared catalogue serves every configuration. For a one-off
query (``persistent=False``) the items stay row-major and each item block is packed on the fly into a
per-thread buffer: no full copy, bitwise the same results.

Few users (fewer than ``kSplitBelowUsers`` = 128 in ``csrc/cpu/topk.cpp``) cannot keep every core busy
with user blocks: the engine then cuts the items into a fixed number of shards (a function of U, I, k
and the item block only, never of the thread count), computes each shard's best k and (max, sum)
separately and merges them exactly in shard order, so results still do not depend on the number of threads.

The SIMD path (AVX-512 / AVX2+FMA / portable scalar) is chosen at run time per call; the environment
variable ``MMREC_FAST_SIMD`` ("avx512", "avx2", "scalar", "auto") can lower it, e.g. for tests. All
paths, and all thread counts and user block sizes, give bitwise-identical results.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mmrec_fast import _native  # type: ignore[attr-defined]  # compiled extension, no stubs

from .base import BlockConfig

__all__ = ["BACKEND", "NativeBackend", "PreparedItems", "describe", "DEFAULT_USER_BLOCK", "DEFAULT_ITEM_BLOCK"]

# Default tiles, sized for a 1-2 MB per-core L2 and a 32-48 KB L1d (Sapphire Rapids: 2 MB / 48 KB;
# Zen 4: 1 MB / 32 KB). Per thread at d = 64: the 256 x 512 float32 score tile (512 KB), the item block
# (512 x 64 x 4 = 128 KB) and the user block (64 KB) stay in L2; the micro-kernel holds one 32-item
# panel pair (8 KB) in L1 while the block's 256 users stream past it. 256 users also make each pass
# over the catalogue (read once per user block from L3/DRAM) cheap: 128 flop per byte of items.
# Measured on a 2-core Sapphire Rapids VM, user blocks of 256-512 and item blocks of 256-1024 were
# within noise of each other at d = 64; 64-128 users were ~10-20% slower. Smaller blocks keep the
# per-row epilogue overhead (fold, exclusions, call) visible; larger tiles spill L2.
DEFAULT_USER_BLOCK = 256
DEFAULT_ITEM_BLOCK = 512


@dataclass(frozen=True)
class PreparedItems:
    """Items packed for the native micro-kernel (read-only, reusable across calls and configs)."""

    packed: np.ndarray  # 1-D float32, _native.packed_size(n_items, dim) elements, 64-byte aligned;
    #                     or, for a one-off query (persistent=False), the (n_items, dim) float32 items
    #                     themselves, packed block by block inside the kernel (no full copy)
    n_items: int
    dim: int

    @property
    def streaming(self) -> bool:
        """True when the items are kept row-major and packed on the fly."""
        return self.packed.ndim == 2

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_items, self.dim)

    @property
    def nbytes(self) -> int:
        return int(self.packed.nbytes)


class NativeBackend:
    """C++ implementation of the kernel contract (see :mod:`mmrec_fast.backends.base`)."""

    name = "native"

    def prepare_items(self, items: np.ndarray, config: BlockConfig, *, persistent: bool = True) -> PreparedItems:
        threads = 0 if config is None or config.num_threads is None else int(config.num_threads)
        items = np.ascontiguousarray(items, dtype=np.float32)
        if not persistent:
            # One query: no packed copy of the catalogue (244 MiB at 1M x 64); the kernel packs each
            # item block into a per-thread buffer as it goes. Same results, bitwise.
            view = items.view()
            view.flags.writeable = False
            return PreparedItems(packed=view, n_items=int(items.shape[0]), dim=int(items.shape[1]))
        packed = _native.pack_items(items, threads)
        packed.flags.writeable = False
        return PreparedItems(packed=packed, n_items=int(items.shape[0]), dim=int(items.shape[1]))

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
    ):
        if not isinstance(prepared, PreparedItems):
            raise TypeError(f"native backend: expected PreparedItems from prepare_items, got {type(prepared).__name__}")
        if users.shape[1] != prepared.dim:
            raise ValueError(f"users have dimension {users.shape[1]}, items {prepared.dim}")
        config = config if config is not None else BlockConfig()
        k = int(k)
        _native.topk(
            users,
            prepared.packed,
            prepared.n_items,
            k,
            float(inv_temperature),
            excl_indptr,
            excl_indices,
            int(config.user_block or DEFAULT_USER_BLOCK),
            int(config.item_block or DEFAULT_ITEM_BLOCK),
            int(config.buffer_capacity(k)),
            int(config.num_threads or 0),
            out_indices,
            out_scores,
            out_lse,
            item_mask,
            bool(normalizer),
        )


def describe() -> str:
    """One line for :func:`mmrec_fast.available_backends`, e.g. "native (AVX-512, OpenMP, 2 threads)"."""
    names = {"avx512": "AVX-512", "avx2": "AVX2+FMA", "scalar": "scalar"}
    try:
        level = names.get(_native.simd_level(), _native.simd_level())
    except ValueError as exc:  # a bad MMREC_FAST_SIMD value
        level = f"SIMD setting invalid: {exc}"
    threads = f"OpenMP, {_native.max_threads()} threads" if _native.openmp_enabled() else "no OpenMP, 1 thread"
    return f"native ({level}, {threads})"


BACKEND = NativeBackend()
