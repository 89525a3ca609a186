"""PyTorch backend: the engine's contract with chunked ``mm`` + ``topk`` + ``logsumexp``, CPU or CUDA.

Works on torch tensors where they are (CPU or any CUDA device, zero-copy in; results come back as
tensors on that device) and on NumPy arrays (wrapped without a copy as CPU tensors, results as NumPy).
It is the portable GPU path -- anything PyTorch runs on -- and the yardstick the fused CUDA kernel is
measured against; it writes each score tile to memory and selects in a second pass, which is exactly
the traffic the fused kernel avoids.

Exact tie order. ``torch.topk`` does not promise which of several equal values it returns, so the
selection runs on int64 keys instead of scores: the order-preserving image of the float32 score bits in
the high 32 bits and the complemented item index in the low 32 bits (the signed-int64 version of
:mod:`mmrec_fast._keys`). Keys are unique, so ``topk`` over keys is exactly "score descending, ties to
the lower index", at the k-th boundary too.

Normaliser: per tile the float32 row max and float32 sum of ``exp((s - max) * inv_t)``, folded into a
float64 running (max * inv_t, sum) -- the contract's formula -- with rows that are all -inf left untouched.
"""

from __future__ import annotations

import numpy as np
import torch

from .. import _arrays, _keys
from .base import BlockConfig, scale_factor32

__all__ = ["BACKEND", "TorchBackend", "describe", "encode_keys", "decode_keys"]

# Score-tile elements per step (users x items). A tile costs ~5x its float32 size in temporaries
# (scores, scaled scores, int64 keys, the key concatenation): 2 Mi elements ~ 40 MB on a CPU. With 4 Mi
# the process peak (allocator caching included) reached 262-318 MB above the inputs at U=1k, I=300k --
# at the edge of the engine's 300 MB budget -- and 2 Mi measured 143-187 MB and ran faster (13.5 s vs
# 16.8 s median, U=2k, I=300k, d=64, k=100, same process, this 2-core machine);
# 128 Mi elements ~ 2.5 GB on a GPU (a few large kernels per call, small beside a 40-141 GB device).
CPU_TILE_ELEMENTS = 1 << 21
CUDA_TILE_ELEMENTS = 1 << 27
CPU_ITEM_BLOCK = 1 << 16
CUDA_ITEM_BLOCK = 1 << 20
# Users per engine call on a GPU: one call per ~2e13 multiply-adds (a few seconds on an H100).
CUDA_CHUNK_MACS = 20_000_000_000_000

EMPTY_KEY = _keys.TORCH_EMPTY_KEY
encode_keys = _keys.encode_torch
decode_keys = _keys.decode_torch


class TorchBackend:
    """Chunked ``mm`` + exact key ``topk`` + online logsumexp on torch tensors (CPU or CUDA)."""

    name = "torch"
    array_api = True  # computes on the caller's array family (see mmrec_fast.backends.base)

    def prepare_items(self, items, config: BlockConfig, *, persistent: bool = True) -> torch.Tensor:
        # Validated float32 C-contiguous items of any family: NumPy is wrapped without a copy, CuPy
        # shared through DLPack, tensors used as they are.
        return _arrays.to_family(items, "torch")

    def adopt_users(self, users, prepared: torch.Tensor) -> torch.Tensor:
        """Users as a float32 tensor on the items' device (the only copy: host users for GPU items)."""
        users = _arrays.to_family(users, "torch")
        if users.device != prepared.device:
            if users.device.type == "cuda" and prepared.device.type == "cuda":
                raise ValueError(f"users: on {users.device} but the items are on {prepared.device}")
            users = users.to(prepared.device)
        return users

    def chunk_users(self, n_items: int, dim: int, prepared) -> int | None:
        """Users per engine call (``None``: the engine's CPU default)."""
        if prepared.device.type == "cuda":
            return max(1024, CUDA_CHUNK_MACS // max(1, n_items * dim))
        return None

    def topk_arrays(
        self,
        users: torch.Tensor,
        prepared: torch.Tensor,
        k: int,
        inv_temperature: float,
        excl_indptr: np.ndarray,
        excl_indices: np.ndarray,
        config: BlockConfig,
        *,
        item_mask: np.ndarray | None = None,
        normalizer: bool = True,
    ):
        """Top-k keys and normaliser of ``users`` against ``prepared`` (1 <= k <= I).

        Returns
        -------
        indices : (U, k) int64 tensor, scores : (U, k) float32 tensor, lse : (U,) float64 tensor, all
        on the items' device.
        """
        items = prepared
        device = items.device
        n_users, n_items = users.shape[0], items.shape[0]
        cuda = device.type == "cuda"
        budget = CUDA_TILE_ELEMENTS if cuda else CPU_TILE_ELEMENTS
        item_block = int(config.item_block or min(n_items, CUDA_ITEM_BLOCK if cuda else CPU_ITEM_BLOCK))
        item_block = max(1, min(item_block, n_items))
        user_block = int(config.user_block or max(1, budget // item_block))
        out_idx = torch.empty((n_users, k), dtype=torch.int64, device=device)
        out_scores = torch.empty((n_users, k), dtype=torch.float32, device=device)
        out_lse = torch.empty(n_users, dtype=torch.float64, device=device)
        # Masked (ineligible) item ids, on the device once per call; each block takes its slice.
        masked = None
        if item_mask is not None:
            masked_ids = np.flatnonzero(item_mask == 0)
            masked = (masked_ids, torch.from_numpy(masked_ids).to(device))
        with torch.inference_mode():
            for u0 in range(0, n_users, user_block):
                u1 = min(u0 + user_block, n_users)
                keys, lse = self._user_block(
                    users[u0:u1],
                    items,
                    k,
                    float(inv_temperature),
                    excl_indptr[u0 : u1 + 1],
                    excl_indices,
                    item_block,
                    masked,
                    normalizer,
                )
                scores, indices = decode_keys(keys)
                out_idx[u0:u1] = indices
                out_scores[u0:u1] = scores
                out_lse[u0:u1] = lse
        return out_idx, out_scores, out_lse

    @staticmethod
    def _user_block(users, items, k, inv_t, indptr, excl_indices, item_block, masked=None, normalizer=True):
        device = users.device
        rows = users.shape[0]
        n_items = items.shape[0]
        # This block's exclusions as (row, item) pairs sorted by item, so each item block takes a slice.
        lo, hi = int(indptr[0]), int(indptr[-1])
        ex_cols = np.asarray(excl_indices[lo:hi], dtype=np.int64)
        ex_rows = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
        order = np.argsort(ex_cols, kind="stable")
        ex_cols, ex_rows = ex_cols[order], ex_rows[order]
        ex_cols_t = torch.from_numpy(ex_cols).to(device)
        ex_rows_t = torch.from_numpy(ex_rows).to(device)

        inv_t32 = float(scale_factor32(inv_t))
        best = torch.full((rows, k), EMPTY_KEY, dtype=torch.int64, device=device)
        run_max = torch.full((rows,), float("-inf"), dtype=torch.float64, device=device)
        run_sum = torch.zeros(rows, dtype=torch.float64, device=device)
        for j0 in range(0, n_items, item_block):
            j1 = min(j0 + item_block, n_items)
            if masked is not None:
                ma, mb = np.searchsorted(masked[0], [j0, j1])
                if mb - ma == j1 - j0:
                    continue  # no eligible item in this block
            tile = users @ items[j0:j1].T  # float32, float32 accumulation
            a, b = np.searchsorted(ex_cols, [j0, j1])
            if b > a:
                tile[ex_rows_t[a:b], ex_cols_t[a:b] - j0] = float("-inf")
            if masked is not None and mb > ma:
                tile[:, masked[1][ma:mb] - j0] = float("-inf")
            keys = encode_keys(tile, j0)
            if not normalizer:
                del tile
                best = torch.topk(torch.cat([best, keys], dim=1), k, dim=1, largest=True, sorted=True).values
                del keys
                continue
            # Difference first, then the scale: the exponent keeps its precision at small temperatures;
            # the float64 reference block_max * inv_t is what result.probabilities computes for the top.
            block_max = tile.amax(dim=1)
            live = torch.isfinite(block_max)
            # Rows with nothing eligible shift by 0: exp(-inf - 0) = 0, never (-inf) - (-inf).
            shift = torch.where(live, block_max, 0.0)
            block_sum = torch.exp((tile - shift[:, None]) * inv_t32).sum(dim=1).double()
            bm = torch.where(live, block_max.double() * inv_t, float("-inf"))
            new_max = torch.maximum(run_max, bm)
            safe = torch.where(live, new_max, 0.0)
            run_sum = torch.where(live, run_sum * torch.exp(run_max - safe) + block_sum * torch.exp(bm - safe), run_sum)
            run_max = new_max
            del tile
            best = torch.topk(torch.cat([best, keys], dim=1), k, dim=1, largest=True, sorted=True).values
            del keys
        live = torch.isfinite(run_max)
        lse = torch.where(live, run_max + torch.log(torch.where(live, run_sum, 1.0)), float("-inf"))
        return best, lse


def describe() -> str:
    """One line for :func:`mmrec_fast.available_backends`."""
    cuda = f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "CPU only"
    return f"torch {torch.__version__} (chunked mm + exact-key topk; {cuda})"


BACKEND = TorchBackend()
