"""The worker actor: one prepared item shard (an :class:`~mmrec_fast.ItemIndex`), queried per user batch.

The class is plain Python; :func:`actor_class` turns it into a Ray actor class with the requested
resources. Its items arrive as an object-store reference (wrapped in a list, so Ray hands over the
reference and the worker fetches it: a read-only, zero-copy NumPy view of the node's shared memory);
the index is packed from it once per worker, and again only when a restarted worker re-runs
``__init__`` -- the driver keeps the reference alive for as long as the engine is open.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["ShardWorker", "actor_class", "shard_exclusion", "canonical"]


def canonical(array: np.ndarray, dtype) -> np.ndarray:
    """The same memory viewed with NumPy's canonical dtype object.

    Arrays deserialised by Ray (pickle protocol 5) carry an *equal but distinct* dtype object, and the
    native extension's argument check compares dtype objects by identity ("excl_indices: wrong dtype
    int64"); a view with the canonical dtype costs nothing and passes.
    """
    return np.asarray(array).view(np.dtype(dtype))


def shard_exclusion(indptr: np.ndarray, indices: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """The exclusion CSR restricted to items [lo, hi), re-based to shard-local ids (rows stay sorted)."""
    if lo == 0 and (indices.size == 0 or indices.max() < hi):
        return indptr, indices
    keep = (indices >= lo) & (indices < hi)
    kept_before = np.zeros(indices.shape[0] + 1, dtype=np.int64)
    np.cumsum(keep, out=kept_before[1:])
    return kept_before[indptr], indices[keep] - lo


class ShardWorker:
    """Holds items [offset, offset + len(items)) prepared for the engine; answers batches of users.

    Parameters
    ----------
    items : ndarray (I_shard, d) float32, or [ObjectRef] of one
        The shard, or a one-element list holding its object reference (fetched zero-copy here).
    offset : int
        Global id of the shard's first item.
    backend, item_block, user_block, num_threads
        As in :func:`mmrec_fast.topk`; ``num_threads`` should equal the CPUs reserved for the actor.
    """

    def __init__(self, items, offset: int, backend: str, item_block, user_block, num_threads):
        from ..index import ItemIndex

        if isinstance(items, list):
            from ._ray import require_ray

            items = require_ray().get(items[0])
        self.offset = int(offset)
        self.index = ItemIndex(items, backend=backend, item_block=item_block)
        self.user_block = user_block
        self.num_threads = num_threads

    def ready(self) -> int:
        """Answers once the index is built; returns the worker's process id."""
        return os.getpid()

    def topk(self, batch_id: int, payload, k: int, temperature: float):
        """Top-k of one user batch against this shard, item ids made global.

        Returns ``(batch_id, indices, scores, log_normalizer)``; the driver keys results by batch id.
        """
        users, indptr, indices = payload
        users = canonical(users, np.float32)
        indptr, indices = canonical(indptr, np.int64), canonical(indices, np.int64)
        lo, hi = self.offset, self.offset + self.index.n_items
        indptr, indices = shard_exclusion(indptr, indices, lo, hi)
        result = self.index.topk(
            users,
            k,
            exclude=(indptr, indices),
            temperature=temperature,
            user_block=self.user_block,
            num_threads=self.num_threads,
        )
        ids = result.indices
        if self.offset:
            ids = np.where(ids >= 0, ids + self.offset, -1)
        return batch_id, ids, result.scores, result.log_normalizer


def actor_class(*, num_cpus: float, num_gpus: float, max_restarts: int):
    """``ShardWorker`` as a Ray actor class with these resources.

    Ray restarts a dead worker up to ``max_restarts`` times (re-running ``__init__`` from the pinned
    item reference); tasks that were in flight on it fail (``max_task_retries=0``) and the scheduler
    resubmits them by batch id, so every retry is visible and counted.
    """
    from ._ray import require_ray

    ray = require_ray()
    return ray.remote(ShardWorker).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts, max_task_retries=0
    )
