"""The immutable state of an :class:`~mmrec_fast.ItemIndex` and its copy-on-write transitions.

A :class:`Snapshot` is one consistent catalogue: a **main** segment (rows sorted by external id, packed for
the backend), its **tombstones** (rows removed or superseded since the last compaction) and a small
**delta** segment (rows added or updated since then, also sorted by external id). Every write builds a
new snapshot off to the side -- new arrays, new packing -- and never touches one a reader may hold, so
an index swaps states by one reference assignment. Segments that a write does not change are shared
between consecutive snapshots (the main segment survives every write until the next compaction).

Rows of each segment are sorted by external id, so the engine's tie rule (lower row first) is the
lower external id inside a segment, and the merge of the two segments uses the same key: results never
depend on the order of the updates that led to a catalogue.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from . import validation

__all__ = ["Segment", "Snapshot", "as_external_ids", "add", "update", "remove", "compact", "live_content"]

_INT64_MAX = np.iinfo(np.int64).max


class Segment:
    """Items packed for one backend, rows sorted by external id (duck-types what the engine's search reads).

    ``ids`` is ``None`` when the external ids are the row numbers ``0 .. n-1`` (the frozen, positional
    usage), so that case costs nothing extra.
    """

    __slots__ = ("items", "ids", "prepared", "max_abs", "backend", "item_block", "cache", "lock")

    def __init__(self, items, ids: np.ndarray | None, prepared, max_abs: float, backend, item_block):
        self.items = items
        self.ids = ids
        self.prepared = prepared
        self.max_abs = max_abs
        self.backend = backend
        self.item_block = item_block
        # Derived data (e.g. the cosine copy) computed on first use; a segment never changes, so neither does it.
        self.cache: dict[str, Any] = {}
        self.lock = threading.Lock()

    @property
    def n_items(self) -> int:
        """Rows in the segment (tombstoned ones included)."""
        return int(self.items.shape[0])

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return int(self.items.shape[1])

    def external(self) -> np.ndarray:
        """External id of every row (int64, ascending)."""
        return np.arange(self.n_items, dtype=np.int64) if self.ids is None else self.ids

    def rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each external id in this segment, -1 where the segment does not hold it."""
        if self.ids is None:
            return np.where(ids < self.n_items, ids, -1)
        n = self.ids.shape[0]
        if n == 0:
            return np.full(ids.shape, -1, dtype=np.int64)
        # An id above every held one lands at n; clipped to n - 1 it cannot match.
        pos = np.minimum(np.searchsorted(self.ids, ids), n - 1)
        return np.where(self.ids[pos] == ids, pos, -1)

    def host_items(self) -> np.ndarray:
        """The rows as a host float32 array (a view for NumPy segments)."""
        from . import _arrays

        return _arrays.asnumpy(self.items)


# Builds a prepared segment from host float32 rows and their sorted ids (bound to one index's backend).
SegmentFactory = Callable[[np.ndarray, "np.ndarray | None"], Segment]


class Snapshot:
    """One consistent catalogue: main segment, its tombstones, the delta segment and a version number."""

    __slots__ = ("main", "dead", "n_dead", "delta", "version", "cache")

    def __init__(self, main: Segment, dead: np.ndarray | None = None, delta: Segment | None = None, version: int = 0):
        self.main = main
        self.dead = dead  # bool (main rows,): True = removed or superseded; None when there is none
        self.n_dead = 0 if dead is None else int(dead.sum())
        self.delta = delta  # None when empty
        self.version = version
        self.cache: dict[str, Any] = {}

    @property
    def plain(self) -> bool:
        """External ids are the rows 0..I-1 and nothing changed since the index was built or compacted."""
        return self.main.ids is None and self.dead is None and self.delta is None

    @property
    def n_items(self) -> int:
        """Live items."""
        return self.main.n_items - self.n_dead + (0 if self.delta is None else self.delta.n_items)

    @property
    def n_pending(self) -> int:
        """Tombstones plus delta rows: what the next compaction folds away."""
        return self.n_dead + (0 if self.delta is None else self.delta.n_items)

    def segments(self) -> list[Segment]:
        """The main segment, then the delta segment if there is one."""
        return [self.main] if self.delta is None else [self.main, self.delta]

    def live_ids(self) -> np.ndarray:
        """Every live external id, ascending (computed once per snapshot)."""
        ids = self.cache.get("live_ids")
        if ids is None:
            main = self.main.external()
            if self.dead is not None:
                main = main[~self.dead]
            ids = main if self.delta is None else np.sort(np.concatenate([main, self.delta.external()]))
            ids.flags.writeable = False
            self.cache["live_ids"] = ids
        return ids

    def locate(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row in main or -1, row in delta or -1) of each external id; a tombstoned main row counts as absent."""
        main_rows = self.main.rows_of(ids)
        if self.dead is not None:
            main_rows = np.where((main_rows >= 0) & self.dead[np.maximum(main_rows, 0)], -1, main_rows)
        delta_rows = self.delta.rows_of(ids) if self.delta is not None else np.full(ids.shape, -1, np.int64)
        return main_rows, delta_rows

    def contains(self, ids: np.ndarray) -> np.ndarray:
        """Whether each external id is live."""
        main_rows, delta_rows = self.locate(ids)
        return (main_rows >= 0) | (delta_rows >= 0)

    def vectors(self, ids: np.ndarray, name: str) -> np.ndarray:
        """Host float32 rows of live external ids (``ValueError`` naming ``name`` for an unknown id)."""
        main_rows, delta_rows = self.locate(ids)
        missing = (main_rows < 0) & (delta_rows < 0)
        if missing.any():
            raise ValueError(f"{name}: id {int(ids[np.argmax(missing)])} is not in the index")
        out = np.empty((ids.shape[0], self.main.dim), dtype=np.float32)
        in_main = main_rows >= 0
        if in_main.any():
            out[in_main] = self.main.host_items()[main_rows[in_main]]
        if (~in_main).any():
            out[~in_main] = self.delta.host_items()[delta_rows[~in_main]]  # type: ignore[union-attr]
        return out


def as_external_ids(x, name: str, *, unique: bool = False) -> np.ndarray:
    """Validate a 1-D sequence of external item ids (integers >= 0) and return it as int64.

    With ``unique``, a repeated id is a ``ValueError`` too (a write must say once what happens to an item).
    """
    arr = validation.to_numpy(x, name)
    if arr.ndim == 0:
        raise ValueError(f"{name}: expected a 1-D sequence of item ids, got a scalar")
    if arr.size == 0:
        arr = arr.reshape(-1).astype(np.int64)
    if arr.dtype == bool or arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer item ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence of item ids, got shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > _INT64_MAX:
        raise ValueError(f"{name}: id {int(arr.max())} does not fit in int64")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and int(arr.min()) < 0:
        raise ValueError(f"{name}: id {int(arr.min())} is negative; external item ids must be >= 0 (-1 is padding)")
    if unique and arr.size > 1:
        ordered = np.sort(arr)
        dup = ordered[1:] == ordered[:-1]
        if dup.any():
            raise ValueError(f"{name}: id {int(ordered[1:][dup][0])} appears more than once")
    return arr


def _sorted_rows(ids: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(ids, kind="stable")
    return ids[order], items[order]


def _new_delta(snap: Snapshot, keep: np.ndarray | None, ids: np.ndarray, vecs: np.ndarray, make: SegmentFactory):
    """The delta segment: the old delta rows where ``keep`` (all when None) plus new rows, sorted by id."""
    old_ids = np.zeros(0, np.int64) if snap.delta is None else snap.delta.external()
    old_items = np.zeros((0, snap.main.dim), np.float32) if snap.delta is None else snap.delta.host_items()
    if keep is not None:
        old_ids, old_items = old_ids[keep], old_items[keep]
    all_ids = np.concatenate([old_ids, ids])
    if all_ids.size == 0:
        return None
    all_ids, all_items = _sorted_rows(all_ids, np.concatenate([old_items, vecs]))
    return make(all_items, all_ids)


def _with_dead(snap: Snapshot, rows: np.ndarray) -> np.ndarray | None:
    if rows.size == 0:
        return snap.dead
    dead = np.zeros(snap.main.n_items, dtype=bool) if snap.dead is None else snap.dead.copy()
    dead[rows] = True
    dead.flags.writeable = False
    return dead


def add(snap: Snapshot, ids: np.ndarray, vecs: np.ndarray, make: SegmentFactory) -> Snapshot:
    """A snapshot with new items (``ids`` unique and absent: the caller checked)."""
    delta = _new_delta(snap, None, ids, vecs, make)
    return Snapshot(snap.main, snap.dead, delta, snap.version + 1)


def update(snap: Snapshot, ids: np.ndarray, vecs: np.ndarray, make: SegmentFactory) -> Snapshot:
    """A snapshot with new vectors for live items: main rows become tombstones, the new rows go to the delta."""
    main_rows, delta_rows = snap.locate(ids)
    dead = _with_dead(snap, main_rows[main_rows >= 0])
    keep = None
    if snap.delta is not None:
        keep = np.ones(snap.delta.n_items, dtype=bool)
        keep[delta_rows[delta_rows >= 0]] = False
    return Snapshot(snap.main, dead, _new_delta(snap, keep, ids, vecs, make), snap.version + 1)


def remove(snap: Snapshot, ids: np.ndarray, make: SegmentFactory) -> Snapshot:
    """A snapshot without the given live items."""
    main_rows, delta_rows = snap.locate(ids)
    dead = _with_dead(snap, main_rows[main_rows >= 0])
    delta = snap.delta
    gone = delta_rows[delta_rows >= 0]
    if delta is not None and gone.size:
        keep = np.ones(delta.n_items, dtype=bool)
        keep[gone] = False
        delta = _new_delta(snap, keep, np.zeros(0, np.int64), np.zeros((0, snap.main.dim), np.float32), make)
    return Snapshot(snap.main, dead, delta, snap.version + 1)


def live_content(snap: Snapshot) -> tuple[np.ndarray, np.ndarray | None]:
    """(host float32 rows, ascending external ids or None for 0..n-1) of every live item, in id order."""
    if snap.plain:
        return snap.main.host_items(), None
    items = snap.main.host_items()
    ids = snap.main.external()
    if snap.dead is not None:
        items, ids = items[~snap.dead], ids[~snap.dead]
    if snap.delta is not None:
        ids, items = _sorted_rows(
            np.concatenate([ids, snap.delta.external()]), np.concatenate([items, snap.delta.host_items()])
        )
    return items, (None if _is_arange(ids) else ids)


def compact(snap: Snapshot, make: SegmentFactory) -> Snapshot:
    """A snapshot with one main segment holding exactly the live items: what a fresh index would hold."""
    items, ids = live_content(snap)
    return Snapshot(make(np.ascontiguousarray(items), ids), None, None, snap.version + 1)


def _is_arange(ids: np.ndarray) -> bool:
    n = ids.shape[0]
    return n == 0 or (int(ids[0]) == 0 and int(ids[-1]) == n - 1 and bool(np.all(np.diff(ids) == 1)))


def canonical_ids(ids: np.ndarray) -> np.ndarray | None:
    """``None`` for ids that are exactly 0..n-1 (sorted), else the read-only array itself."""
    if _is_arange(ids):
        return None
    ids.flags.writeable = False
    return ids
