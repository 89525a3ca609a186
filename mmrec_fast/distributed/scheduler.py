"""The batch loop: submit user batches to shard workers, retry failed ones by batch id, yield in order.

Every batch has an id (its position); every (batch, shard) part is submitted to one worker of that
shard. A part that fails for an infrastructure reason (worker killed, node lost) goes back to the
front of its shard's queue and is resubmitted, at most ``max_retries`` times; the first answer of a
part is kept and any later one is dropped, so no batch is lost or counted twice. A batch is complete
when all its shard parts are in; shard parts are merged exactly (:func:`mmrec_fast.merge_topk`);
batches are yielded in id order. At most ``window`` batches are between submission and being yielded,
which bounds what the driver and the object store hold, whatever U.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from ..merge import merge_topk
from ..result import TopK
from ._ray import require_ray, retryable_errors

__all__ = ["UserBatch", "RunStats", "run_batches"]


@dataclass(frozen=True)
class UserBatch:
    """One batch of the result: users ``start:stop`` of the query, in the global item id space."""

    batch_id: int
    start: int
    stop: int
    result: TopK


@dataclass
class RunStats:
    """What happened during one run (for logs and tests)."""

    batches: int = 0
    parts_submitted: int = 0
    retried_parts: int = 0
    duplicate_parts_dropped: int = 0
    max_buffered_batches: int = 0
    failures: list = field(default_factory=list)


def run_batches(pool, query, *, per_worker: int, window: int, max_retries: int, stats: RunStats, bar=None):
    """Generator of :class:`UserBatch` in batch order (see the module docstring)."""
    ray = require_ray()
    retryable = retryable_errors()
    n_batches, n_shards = len(query.batches), len(pool.slots)
    stats.batches = n_batches
    queues = [deque() for _ in range(n_shards)]
    payload_refs: dict[int, object] = {}
    parts: dict[int, dict[int, tuple]] = {}
    attempts: dict[tuple[int, int], int] = {}
    pending: dict[object, tuple] = {}  # ref -> (slot, generation, batch_id)
    next_submit = next_yield = 0
    try:
        while next_yield < n_batches:
            # Admit batches while the window allows; each batch's users + exclusion rows go to the object
            # store once and are shared by its shard parts (and by retries).
            while next_submit < n_batches and next_submit - next_yield < window:
                payload_refs[next_submit] = ray.put(query.batch_payload(next_submit))
                parts[next_submit] = {}
                for queue in queues:
                    queue.append(next_submit)
                next_submit += 1
            for shard, queue in enumerate(queues):
                while queue:
                    slot = pool.free_slot(shard, per_worker)
                    if slot is None:
                        break
                    batch_id = queue.popleft()
                    ref = slot.actor.topk.remote(batch_id, payload_refs[batch_id], query.k, query.temperature)
                    pending[ref] = (slot, slot.generation, batch_id)
                    slot.in_flight += 1
                    stats.parts_submitted += 1
            probes = pool.probe_refs()
            waiting = list(pending) + list(probes)
            if not waiting:  # every worker is between probes (restarting): wait for the next probe
                time.sleep(0.05)
                continue
            ready, _ = ray.wait(waiting, num_returns=1, timeout=0.5)
            for ref in ready:
                if ref in probes:
                    pool.probe_done(probes[ref], ref)
                    continue
                slot, generation, batch_id = pending.pop(ref)
                if slot.generation == generation:
                    slot.in_flight -= 1
                try:
                    _, ids, scores, lse = ray.get(ref)
                except retryable as exc:
                    key = (batch_id, slot.shard)
                    attempts[key] = attempts.get(key, 0) + 1
                    stats.failures.append((batch_id, slot.shard, type(exc).__name__))
                    if attempts[key] > max_retries:
                        raise RuntimeError(
                            f"batch {batch_id} (item shard {slot.shard}) failed "
                            f"{attempts[key]} times; last error: {exc}"
                        ) from exc
                    if slot.generation == generation:
                        pool.mark_failed(slot)
                    queues[slot.shard].appendleft(batch_id)
                    stats.retried_parts += 1
                    continue
                if slot.shard in parts[batch_id]:
                    stats.duplicate_parts_dropped += 1
                    continue
                parts[batch_id][slot.shard] = (ids, scores, lse)
            stats.max_buffered_batches = max(
                stats.max_buffered_batches, sum(len(p) == n_shards for p in parts.values())
            )
            while next_yield < next_submit and len(parts[next_yield]) == n_shards:
                batch = _assemble(next_yield, query, parts.pop(next_yield), n_shards)
                del payload_refs[next_yield]
                next_yield += 1
                if bar is not None:
                    bar.update(batch.stop - batch.start)
                yield batch
    finally:
        for ref in pending:  # the consumer stopped early (or an error): do not leave work queued
            try:
                ray.cancel(ref)
            except Exception:
                pass


def _assemble(batch_id: int, query, shard_parts: dict, n_shards: int) -> UserBatch:
    u0, u1 = query.batches[batch_id]
    if n_shards == 1:
        ids, scores, lse = shard_parts[0]
        result = TopK(ids, scores, lse, query.temperature)
    else:
        result = merge_topk([TopK(*shard_parts[s], query.temperature) for s in range(n_shards)], query.k)
    return UserBatch(batch_id, u0, u1, result)
