"""Validation and partitioning of distributed work, on the driver, before anything is submitted.

Pure NumPy (no Ray): every argument is checked here with :mod:`mmrec_fast.validation`, so bad input
raises a ``ValueError`` naming the argument before an object is put or a task is sent.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from .. import validation

__all__ = [
    "check_count",
    "item_shard_bounds",
    "resolve_item_shards",
    "user_batch_bounds",
    "default_batch_size",
    "Query",
    "prepare_query",
]

# Shard boundaries fall on multiples of the kernel's item block (at least the native 16-item panel):
# every shard then cuts the catalogue into the same item blocks as one call over all of it, so each
# block's float32 sum-exp is the same and the merged normaliser differs only in how the float64
# per-shard totals are added (last bits), not by float32 block rounding.
_ALIGN = 16
# Work per batch, in multiply-adds: like the engine's own chunk (a second or two per batch), so
# progress and fault recovery are fine-grained while the per-task overhead (~1 ms) stays negligible.
_BATCH_MACS = 4_000_000_000
_MIN_BATCH_USERS = 512
_MAX_BATCH_USERS = 65_536
DEFAULT_MAX_SHARD_BYTES = 4 * 2**30  # item_shards="auto": float32 catalogue bytes per worker


def check_count(value, name: str, *, allow_none: bool = True, minimum: int = 1):
    """An integer >= ``minimum`` (or None when allowed)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def item_shard_bounds(n_items: int, n_shards: int, align: int = _ALIGN) -> list[tuple[int, int]]:
    """Contiguous, near-equal item ranges covering [0, n_items), boundaries on multiples of ``align``
    (never an empty shard: fewer shards when there are fewer blocks)."""
    panels = math.ceil(n_items / align)
    n_shards = max(1, min(n_shards, panels))
    cuts = [min(n_items, round(panels * s / n_shards) * align) for s in range(n_shards + 1)]
    cuts[-1] = n_items
    return [(cuts[s], cuts[s + 1]) for s in range(n_shards)]


def shard_alignment(backend: str, item_block: int | None) -> int:
    """Item block of the backend's kernel (``item_block`` or its default), at least 16."""
    import importlib

    if item_block is None:
        module = importlib.import_module(f"mmrec_fast.backends.{backend}_backend")
        item_block = getattr(module, "DEFAULT_ITEM_BLOCK", _ALIGN)
    return max(_ALIGN, int(item_block))


def resolve_item_shards(item_shards, items_nbytes: int, max_shard_bytes: int) -> int:
    """``item_shards`` as a count: an int >= 1, or "auto" (enough shards that each holds at most
    ``max_shard_bytes`` of float32 items)."""
    if item_shards == "auto":
        max_shard_bytes = check_count(max_shard_bytes, "max_shard_bytes", allow_none=False)
        return max(1, math.ceil(items_nbytes / max_shard_bytes))
    return check_count(item_shards, "item_shards", allow_none=False)


def user_batch_bounds(n_users: int, batch_size: int) -> list[tuple[int, int]]:
    """Consecutive user ranges of ``batch_size`` (the last one shorter); batch id = position."""
    return [(u0, min(u0 + batch_size, n_users)) for u0 in range(0, n_users, batch_size)]


def default_batch_size(n_users: int, n_items: int, dim: int, parallelism: int) -> int:
    """Users per batch: about ``_BATCH_MACS`` of work against one item shard (at least 512 users), and,
    where U allows, a number of batches that is a multiple of ``parallelism`` (workers per shard) so
    equal workers finish together.

    Why at least 512: below that many users per call the native kernel splits the *items* internally
    to occupy every thread, and its normaliser then rounds (last bit) differently from a call with
    more users; batches of >= 512 keep even ``log_normalizer`` bitwise equal to the single-process
    engine's (whose own chunks are >= 1024 users).
    """
    if n_users == 0:
        return 1
    target = _BATCH_MACS // max(1, n_items * dim)
    target = min(_MAX_BATCH_USERS, max(_MIN_BATCH_USERS, target))
    n_batches = max(1, n_users // target)  # floor: every batch keeps >= target users
    if n_batches >= parallelism:
        n_batches -= n_batches % parallelism
    return max(1, math.ceil(n_users / n_batches))


@dataclass
class Query:
    """A validated query: float32 users, normalised exclusion CSR, and (once cut) its user batches."""

    users: np.ndarray
    k: int
    temperature: float
    excl_indptr: np.ndarray
    excl_indices: np.ndarray
    batch_size: int | None
    batches: list | None = None

    def cut(self, n_items: int, parallelism: int) -> Query:
        """Fix the user batches (default size from the work per batch and the workers per shard)."""
        n_users = self.users.shape[0]
        size = self.batch_size or default_batch_size(n_users, n_items, self.users.shape[1], parallelism)
        self.batches = user_batch_bounds(n_users, size)
        return self

    def batch_payload(self, batch_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(users, exclusion indptr, exclusion indices) of one batch: its CSR rows travel with it."""
        u0, u1 = self.batches[batch_id]
        return (self.users[u0:u1], *validation.exclusion_range(self.excl_indptr, self.excl_indices, u0, u1))


def prepare_query(
    users, k, *, exclude, temperature, n_items: int, dim: int, items_max_norm: float, batch_size
) -> Query:
    """Validate one query exactly as :func:`mmrec_fast.topk` would (batches are cut later)."""
    k = validation.check_k(k)
    temperature = validation.check_temperature(temperature)
    users = validation.as_float_matrix(users, "users", dim=dim, dim_from="items")
    n_users = users.shape[0]
    indptr, indices = validation.as_exclusion(exclude, n_users, n_items)
    # The overflow guard only needs the item count and max |v|: a zero-byte stand-in for the items.
    stand_in = np.broadcast_to(np.float32(0), (n_items, dim))
    validation.check_score_range(users, stand_in, temperature, items_max_norm=items_max_norm)
    batch_size = check_count(batch_size, "batch_size")
    return Query(users, k, temperature, indptr, indices, batch_size)
