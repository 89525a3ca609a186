"""NumPy float32 blocked backend: the engine's algorithm with BLAS tiles and vectorised selection.

Always available. Tiles come from ``matmul`` (float32 BLAS); each user's running best k live as exact
(score, index) keys (see :mod:`mmrec_fast._keys`) so ``argpartition`` gives the contract's tie order.
The threshold filter skips the selection for every row in which no item of the tile beats the row's
running k-th best -- after the first few blocks that is almost every row.
"""

from __future__ import annotations

import numpy as np

from .. import _keys
from .base import BlockConfig, scale_factor32

DEFAULT_USER_BLOCK = 256
DEFAULT_ITEM_BLOCK = 4096  # 256 x 4096 float32 tile = 4 MB: BLAS-efficient, temporaries stay ~40 MB


class NumpyBackend:
    """Float32 blocked NumPy implementation of the kernel contract."""

    name = "numpy"

    def prepare_items(self, items: np.ndarray, config: BlockConfig, *, persistent: bool = True) -> np.ndarray:
        return items

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
        items = prepared
        n_users, n_items = users.shape[0], items.shape[0]
        user_block = config.user_block or DEFAULT_USER_BLOCK
        item_block = config.item_block or DEFAULT_ITEM_BLOCK
        inv_t = scale_factor32(inv_temperature)
        for u0 in range(0, n_users, user_block):
            u1 = min(u0 + user_block, n_users)
            rows = u1 - u0
            best = np.full((rows, k), _keys.EMPTY_KEY, dtype=np.uint64)
            threshold = np.full(rows, _keys.EMPTY_KEY, dtype=np.uint64)
            run_max = np.full(rows, -np.inf)
            run_sum = np.zeros(rows)
            starts, stops = excl_indptr[u0:u1], excl_indptr[u0 + 1 : u1 + 1]
            cursor = starts.copy()
            for j0 in range(0, n_items, item_block):
                j1 = min(j0 + item_block, n_items)
                masked = None if item_mask is None else np.flatnonzero(item_mask[j0:j1] == 0)
                if masked is not None and masked.size == j1 - j0:  # no eligible item in this block
                    for r in np.flatnonzero(cursor < stops):  # its exclusions are passed over
                        cursor[r] += np.searchsorted(excl_indices[cursor[r] : stops[r]], j1)
                    continue
                tile = users[u0:u1] @ items[j0:j1].T
                if masked is not None and masked.size:
                    tile[:, masked] = -np.inf
                # Exclusion: each row's sorted CSR segment advances through the blocks (O(nnz) overall).
                for r in np.flatnonzero(cursor < stops):
                    end = cursor[r] + np.searchsorted(excl_indices[cursor[r] : stops[r]], j1)
                    tile[r, excl_indices[cursor[r] : end] - j0] = -np.inf
                    cursor[r] = end
                if normalizer:
                    self._update_normaliser(tile, inv_t, inv_temperature, run_max, run_sum)
                keys = _keys.encode(tile, np.arange(j0, j1, dtype=np.int64)[None, :])
                hot = np.flatnonzero((keys > threshold[:, None]).any(axis=1))
                if hot.size:
                    merged = _keys.top_keys(np.concatenate([best[hot], keys[hot]], axis=1), k)
                    best[hot] = merged
                    threshold[hot] = merged[:, k - 1]
            scores, indices = _keys.decode(best)
            out_scores[u0:u1] = scores
            out_indices[u0:u1] = indices
            with np.errstate(divide="ignore"):
                out_lse[u0:u1] = np.where(np.isfinite(run_max), run_max + np.log(run_sum), -np.inf)

    @staticmethod
    def _update_normaliser(
        tile: np.ndarray, inv_t32: np.float32, inv_t: float, run_max: np.ndarray, run_sum: np.ndarray
    ) -> None:
        """Fold one tile of raw scores into the running (max, sum-exp), all -inf rows left untouched.

        Exponents are ``(s - block max) * inv_t`` (difference first), and the running maximum is the
        float64 ``block max * inv_t`` that :func:`mmrec_fast.result.probabilities` also computes, so the
        normaliser and the probabilities come from the same scaled scores at any temperature.
        """
        block_max = tile.max(axis=1)
        live = np.isfinite(block_max)
        if not live.any():
            return
        bm = block_max[live]
        with np.errstate(invalid="ignore"):
            block_sum = np.exp((tile[live] - bm[:, None]) * inv_t32).sum(axis=1, dtype=np.float32)
        block_sum = block_sum.astype(np.float64)
        scaled_max = bm.astype(np.float64) * inv_t
        new_max = np.maximum(run_max[live], scaled_max)
        run_sum[live] = run_sum[live] * np.exp(run_max[live] - new_max) + block_sum * np.exp(scaled_max - new_max)
        run_max[live] = new_max


def describe() -> str:
    """One line for :func:`mmrec_fast.available_backends`."""
    return f"numpy {np.__version__} (float32 BLAS tiles)"


BACKEND = NumpyBackend()
