"""The worker pool: actors per item shard, their health, and replacement of workers that stay dead.

Each shard has ``replicas`` worker slots. A slot whose task failed is taken out of service and probed
(``ready()``): Ray restarts a killed worker (``max_restarts``), the probe then answers and the slot
returns to service; if the worker is gone for good (restarts exhausted, node lost), the slot gets a
fresh actor built from the same object-store items.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

from ._ray import require_ray, retryable_errors
from .worker import actor_class

__all__ = ["Slot", "WorkerPool"]

_PROBE_DELAY_S = 0.2  # between probes of a worker that is restarting
_PROBES_BEFORE_REPLACE = 5


@dataclass
class Slot:
    """One worker position: its current actor and whether it takes work."""

    shard: int
    replica: int
    actor: object
    in_flight: int = 0
    healthy: bool = False
    probe_ref: object = None
    probe_failures: int = 0
    probe_after: float = 0.0
    pid: int | None = None
    generation: int = 0  # bumped when the actor is replaced: late answers of the old one are ignored
    history: list = field(default_factory=list)  # pids this slot has seen (restarts, replacements)


class WorkerPool:
    """Actors holding item shards. ``shards[s] = (offset, items_ref)``; ``replicas`` actors per shard."""

    def __init__(
        self,
        shards,
        *,
        replicas: int,
        backend: str,
        item_block,
        user_block,
        num_threads: int,
        num_cpus: float,
        num_gpus: float,
        max_restarts: int,
    ):
        self._ray = require_ray()
        self._retryable = retryable_errors()
        self._shards = shards
        self._cls = actor_class(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts)
        self._args = (backend, item_block, user_block, num_threads)
        self.replaced = 0
        self.restarted = 0
        self.slots = [[self._new_slot(s, r) for r in range(replicas)] for s in range(len(shards))]

    def _new_slot(self, shard: int, replica: int) -> Slot:
        offset, items_ref = self._shards[shard]
        actor = self._cls.remote([items_ref], offset, *self._args)  # nested: fetched by the worker
        slot = Slot(shard, replica, actor)
        slot.probe_ref = actor.ready.remote()
        return slot

    def all_slots(self):
        return [slot for shard in self.slots for slot in shard]

    def wait_ready(self, timeout: float | None = None, *, warn_after: float = 10.0) -> None:
        """Block until every worker has built its index.

        Raises ``TimeoutError`` after ``timeout`` seconds (workers that cannot be placed: CPUs or GPUs
        held by other actors or tasks) and re-raises a worker's failure to build its index.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = [slot.probe_ref for slot in self.all_slots() if slot.probe_ref is not None]
        _, not_ready = self._ray.wait(pending, num_returns=len(pending), timeout=warn_after)
        if not_ready:
            free = self._ray.available_resources()
            warnings.warn(
                f"{len(not_ready)} of {len(pending)} workers not ready after {warn_after:g} s "
                f"(free now: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU): waiting for their "
                "resources, or for their index to be built",
                RuntimeWarning,
                stacklevel=3,
            )
        for slot in self.all_slots():
            if slot.probe_ref is not None:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    slot.pid = self._ray.get(slot.probe_ref, timeout=left)
                except self._ray.exceptions.GetTimeoutError:
                    free = self._ray.available_resources()
                    raise TimeoutError(
                        f"workers not ready after {timeout:g} s: {len(self.all_slots())} workers need their CPUs/GPUs "
                        f"free (now free: {free.get('CPU', 0):g} CPU, {free.get('GPU', 0):g} GPU); close other "
                        "RayTopK engines or actors holding them"
                    ) from None
                slot.history.append(slot.pid)
                slot.probe_ref, slot.healthy = None, True

    def free_slot(self, shard: int, per_worker: int) -> Slot | None:
        """The healthy worker of ``shard`` with the fewest tasks in flight, if one has room."""
        candidates = [s for s in self.slots[shard] if s.healthy and s.in_flight < per_worker]
        return min(candidates, key=lambda s: s.in_flight) if candidates else None

    def probe_refs(self) -> dict:
        """Outstanding probes, ref -> slot (the scheduler waits on them with the batch refs)."""
        now = time.monotonic()
        for slot in self.all_slots():
            if not slot.healthy and slot.probe_ref is None and now >= slot.probe_after:
                slot.probe_ref = slot.actor.ready.remote()
        return {slot.probe_ref: slot for slot in self.all_slots() if slot.probe_ref is not None}

    def probe_done(self, slot: Slot, ref) -> None:
        """Handle a finished probe: back in service, probe again later, or replace the worker."""
        slot.probe_ref = None
        try:
            pid = self._ray.get(ref)
        except self._retryable:
            slot.probe_failures += 1
            if slot.probe_failures >= _PROBES_BEFORE_REPLACE:
                self._replace(slot)
            else:
                slot.probe_after = time.monotonic() + _PROBE_DELAY_S
            return
        if slot.pid is not None and pid != slot.pid:
            self.restarted += 1
        slot.pid = pid
        slot.history.append(pid)
        slot.healthy, slot.probe_failures = True, 0

    def recover(self, timeout: float = 120.0) -> None:
        """Probe until every worker answers again (restarted or replaced); ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        while not all(slot.healthy for slot in self.all_slots()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not back after {timeout} s")
            probes = self.probe_refs()
            if not probes:
                time.sleep(0.05)
                continue
            ready, _ = self._ray.wait(list(probes), num_returns=1, timeout=1.0)
            for ref in ready:
                self.probe_done(probes[ref], ref)

    def mark_failed(self, slot: Slot) -> None:
        """A task on this slot failed for an infrastructure reason: stop sending it work until it answers."""
        slot.healthy = False

    def _replace(self, slot: Slot) -> None:
        try:
            self._ray.kill(slot.actor, no_restart=True)
        except Exception:  # already gone
            pass
        fresh = self._new_slot(slot.shard, slot.replica)
        slot.actor, slot.probe_ref, slot.probe_failures = fresh.actor, fresh.probe_ref, 0
        slot.in_flight = 0
        slot.generation += 1
        self.replaced += 1

    def pids(self) -> list[list[int | None]]:
        """Process id of each worker (by shard, replica), as of its last answer."""
        return [[slot.pid for slot in shard] for shard in self.slots]

    def actors(self) -> list[list[object]]:
        """Actor handles by shard, replica."""
        return [[slot.actor for slot in shard] for shard in self.slots]

    def close(self) -> None:
        """Kill every worker (frees their CPUs/GPUs); the items stay wherever their references live."""
        for slot in self.all_slots():
            try:
                self._ray.kill(slot.actor, no_restart=True)
            except Exception:
                pass
        self.slots = []
