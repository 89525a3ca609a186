"""An immutable serving snapshot: a loaded model, its catalogue packed for the engine, and the id lookups.

Requests take a reference to the current snapshot when they start and use only it, so a reload or an
item update (which builds a *new* snapshot and swaps one reference) never changes what an in-flight
request sees. Item keys and model item codes are kept apart: keys are the live index's ids (items may be
added or removed after training), codes are what the model and its training matrix know.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .. import index_state
from ..index import ItemIndex
from ..similar import _cosine_snapshot

__all__ = ["Snapshot", "IdLookup", "load_snapshot", "ClientError"]


class ClientError(ValueError):
    """A request error: HTTP ``status`` and the request ``field`` it is about."""

    def __init__(self, field: str, message: str, status: int = 422):
        super().__init__(f"{field}: {message}")
        self.field, self.message, self.status = field, message, status


class IdLookup:
    """External id -> position, by binary search on the sorted ids (no per-id Python objects for 1M items).

    Parameters
    ----------
    ids : ndarray
        External ids (int64, or strings), one per position; duplicates are not allowed.
    what : str
        What the ids are ("user", "item"), for error messages.
    """

    def __init__(self, ids: np.ndarray, what: str):
        self.ids = ids
        self.what = what
        self.integer = ids.dtype.kind in "iu"
        self._order = np.argsort(ids, kind="stable")
        self._sorted = ids[self._order]
        if ids.size > 1 and np.any(self._sorted[1:] == self._sorted[:-1]):
            raise ValueError(f"{what} ids: duplicates")

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def convert(self, values, field: str) -> np.ndarray:
        """``values`` (a JSON list) as an array of this lookup's id type; wrong types are a ClientError."""
        if self.integer:
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ClientError(field, f"{self.what} ids are integers here")
            try:
                return np.asarray(values, dtype=np.int64)
            except OverflowError:
                raise ClientError(field, f"{self.what} ids must fit int64") from None
        if not all(isinstance(v, str) for v in values):
            raise ClientError(field, f"{self.what} ids are strings here")
        return np.asarray(values, dtype=str) if values else np.empty(0, dtype=self._sorted.dtype)

    def positions(self, values, field: str, *, missing_ok: bool = False, status: int = 422) -> np.ndarray:
        """Positions of external ids; unknown ids are a ClientError naming ``field`` (or -1 if ``missing_ok``)."""
        arr = self.convert(values, field)
        if arr.size == 0 or self._sorted.size == 0:
            if arr.size and not missing_ok:
                raise ClientError(field, f"unknown {self.what} ids: {arr[:5].tolist()}", status=status)
            return np.full(arr.shape, -1, dtype=np.int64)
        at = np.searchsorted(self._sorted, arr)
        at_clip = np.minimum(at, self._sorted.size - 1)
        found = self._sorted[at_clip] == arr
        if not missing_ok and not found.all():
            shown = arr[~found][:5].tolist()
            raise ClientError(field, f"unknown {self.what} ids: {shown}", status=status)
        return np.where(found, self._order[at_clip], -1).astype(np.int64)

    def extended(self, new_ids: np.ndarray) -> IdLookup:
        """A lookup with ``new_ids`` appended at the next positions (merged in O(n), no re-sort)."""
        new_ids = np.asarray(new_ids).astype(self.ids.dtype if self.integer else str)
        out = object.__new__(IdLookup)
        out.what, out.integer = self.what, self.integer
        out.ids = np.concatenate([self.ids, new_ids])
        order = np.argsort(new_ids, kind="stable")
        ins = np.searchsorted(self._sorted, new_ids[order])
        if self._sorted.size and np.any(self._sorted[np.minimum(ins, self._sorted.size - 1)] == new_ids[order]):
            raise ValueError(f"{self.what} ids: duplicates")
        out._sorted = np.insert(self._sorted, ins, new_ids[order])
        out._order = np.insert(self._order, ins, len(self.ids) + order)
        return out


def _raw_ids(id_map, n: int) -> np.ndarray:
    """The raw ids of an IdMap as int64 or str array (positions when the model has no map)."""
    if id_map is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(id_map.ids)
    return ids.astype(np.int64) if id_map.is_integer else ids.astype(str)


@dataclass(eq=False)
class Snapshot:
    """Everything one request needs, never mutated after construction (a new one is built instead).

    The catalogue lives in a live :class:`~mmrec_fast.ItemIndex` keyed by int64 *item keys*: a model
    item's key is its code, an item added after training gets the next unused key, and a key is never
    given to another external id (so a request on an older snapshot can never mistake one item for
    another). Each snapshot pins the index state current when it was built (``state``) and queries only
    that state: an item update writes the index (delta segment + tombstones, no repack) and swaps in a new
    snapshot, and requests in flight finish on the state they started with.

    Attributes
    ----------
    model : Recommender
        The loaded model (fold-in, blocks).
    generation : int
        Increases with every swap; reported in responses so clients can tell which model answered.
    source : str
        The model directory it came from.
    user_vectors : ndarray (U, D) float32
    index : ItemIndex
        The live catalogue (ids: item keys), shared by the snapshots of one model load.
    state : mmrec_fast.index_state.Snapshot
        The index state this snapshot queries.
    users : IdLookup
        External user ids -> user codes.
    catalogue : IdLookup
        External item ids -> item keys (every key ever given; :meth:`keys` checks which are live).
    model_items : IdLookup
        External item ids -> model item codes (fold-in histories speak the model's items).
    key_to_code, code_to_key : ndarray of int64
        Item key -> model item code (-1: added after training, or removed and added again) and back
        (-1: removed).
    labels : ndarray of object, or None
        Item key -> label (e.g. title).
    seen : scipy CSR (U, n_model_items) or None
        Training items per user (excluded by default, and the source of "because you liked").
    """

    model: object
    generation: int
    source: str
    user_vectors: np.ndarray
    index: ItemIndex
    state: object
    users: IdLookup
    catalogue: IdLookup
    model_items: IdLookup
    key_to_code: np.ndarray
    code_to_key: np.ndarray
    labels: np.ndarray | None
    seen: sp.csr_matrix | None
    blocks: list = field(default_factory=list)
    representation: np.ndarray | None = None

    @property
    def dim(self) -> int:
        """Width D of the user and item vectors."""
        return int(self.state.main.dim)

    @property
    def n_items(self) -> int:
        """Live catalogue items."""
        return int(self.state.n_items)

    @property
    def items(self) -> np.ndarray:
        """Live item vectors (float32), in ascending key order (the model's item order until items change)."""
        return index_state.live_content(self.state)[0]

    def query_state(self, cosine: bool = False):
        """The pinned index state, or its unit-norm twin for cosine (the index caches unit copies per segment)."""
        # similar._cosine_snapshot is the index's own cache of unit rows (a write re-normalises its delta only).
        return _cosine_snapshot(self.state, self.index._segment) if cosine else self.state

    def keys(self, values, field: str) -> np.ndarray:
        """Item keys of live external ids; an unknown or removed id is a ClientError naming ``field``."""
        keys = self.catalogue.positions(values, field)
        live = self.state.contains(keys) if keys.size else np.ones(0, dtype=bool)
        if not live.all():
            raise ClientError(field, f"unknown item ids: {self.catalogue.ids[keys[~live]][:5].tolist()}")
        return keys

    def vectors(self, keys: np.ndarray, cosine: bool = False) -> np.ndarray:
        """Float32 vectors (unit-norm with ``cosine``) of live keys of this snapshot."""
        return self.query_state(cosine).vectors(keys, "items")

    def seen_rows(self, user_code: int) -> np.ndarray:
        """Item keys of a known user's training items (removed items dropped)."""
        keys = self.code_to_key[self.seen_codes(user_code)]
        return keys[keys >= 0]

    def seen_codes(self, user_code: int) -> np.ndarray:
        """Model item codes of a known user's training items."""
        if self.seen is None:
            return np.empty(0, dtype=np.int64)
        return self.seen.indices[self.seen.indptr[user_code] : self.seen.indptr[user_code + 1]].astype(np.int64)

    def with_items(self, add_ids, add_vectors, add_labels, remove_ids, generation: int) -> Snapshot:
        """A new snapshot with items upserted (new id: added; live id: vector/label replaced) and removed.

        The model, users and training matrix are shared; the index is written in place (add / update /
        remove: a delta segment and tombstones, compacted by the index when they grow), and the new
        snapshot pins its new state. Callers serialise writers (the app's admin lock).
        """
        live_remove = self.keys(remove_ids, "remove") if len(remove_ids) else np.empty(0, np.int64)
        ext = self.catalogue.convert(add_ids, "add.id")
        if len(set(ext.tolist())) != len(ext):
            raise ClientError("add.id", "an id appears twice")
        keys = self.catalogue.positions(add_ids, "add.id", missing_ok=True)
        if np.isin(keys[keys >= 0], live_remove).any():
            raise ClientError("add.id", "an id is both added and removed")
        known = keys >= 0
        fresh = np.zeros(keys.shape, dtype=bool)
        fresh[known] = ~self.state.contains(keys[known])  # removed earlier: added again under its old key
        catalogue, labels, key_to_code = self.catalogue, self.labels, self.key_to_code.copy()
        if (~known).any():
            new_keys = np.arange(len(catalogue), len(catalogue) + int((~known).sum()), dtype=np.int64)
            keys[~known] = new_keys
            catalogue = catalogue.extended(ext[~known])
            key_to_code = np.concatenate([key_to_code, np.full(new_keys.size, -1, dtype=np.int64)])
            if labels is not None:
                labels = np.concatenate([labels, np.full(new_keys.size, None, dtype=object)])
        if labels is not None and any(label is not None for label in add_labels):
            labels = labels.copy()
            for key, label in zip(keys.tolist(), add_labels):
                if label is not None:
                    labels[key] = label
        adding = ~known | fresh
        key_to_code[keys[fresh]] = -1  # removed then added again: a new item to the model's explanations
        key_to_code[live_remove] = -1
        index = self._writable_index()
        if adding.any():
            index.add(keys[adding], add_vectors[adding])
        if (~adding).any():
            index.update(keys[~adding], add_vectors[~adding])
        if live_remove.size:
            index.remove(live_remove)
        code_to_key = self.code_to_key.copy()
        code_to_key[live_remove[live_remove < code_to_key.size]] = -1
        return replace(
            self,
            generation=generation,
            index=index,
            state=index.snapshot(),
            catalogue=catalogue,
            key_to_code=key_to_code,
            code_to_key=code_to_key,
            labels=labels,
        )

    def _writable_index(self) -> ItemIndex:
        """The live index if its current state is this snapshot's, else a fresh index of this snapshot's items.

        The copy is only for a lineage that forked (two apps sharing one loaded snapshot, or a write that
        failed half way): writing the shared index then would change what the other lineage serves.
        """
        if self.index.snapshot() is self.state:
            return self.index
        items, ids = index_state.live_content(self.state)
        keys = np.arange(items.shape[0], dtype=np.int64) if ids is None else ids
        return ItemIndex(np.ascontiguousarray(items), ids=keys)


def load_snapshot(model_dir, generation: int = 0) -> Snapshot:
    """Load a saved model directory (:func:`mmrec_fast.models.load_model`) into a serving snapshot.

    Parameters
    ----------
    model_dir : str or Path
        A directory written by ``mmrec-fast train`` or :func:`~mmrec_fast.models.save_model`; its
        ``train_matrix.npz`` (excluded items, "because you liked") and ``item_labels.json`` are used when present.
    generation : int
        The snapshot's generation number.

    Returns
    -------
    Snapshot
    """
    from ..models import load_model

    saved = load_model(Path(model_dir), device="cpu")
    model = saved.model
    seen = None
    if "train_matrix.npz" in saved.extra_files:
        seen = sp.csr_matrix(sp.load_npz(saved.extra_files["train_matrix.npz"]))
        if seen.shape != (model.n_users, model.n_items):
            raise ValueError(f"train_matrix.npz: shape {seen.shape} does not match the model's users x items")
        seen.sort_indices()
    labels = None
    if "item_labels.json" in saved.extra_files:
        values = json.loads(saved.extra_files["item_labels.json"].read_text(encoding="utf-8"))
        if not isinstance(values, list) or len(values) != model.n_items:
            raise ValueError(f"item_labels.json: expected a list of {model.n_items} labels")
        labels = np.asarray([None if v is None else str(v) for v in values], dtype=object)
    index = ItemIndex(np.ascontiguousarray(model.item_vectors(), dtype=np.float32))  # keys 0..I-1 = codes
    item_ids = _raw_ids(saved.item_map, model.n_items)
    codes = np.arange(model.n_items, dtype=np.int64)
    return Snapshot(
        model=model,
        generation=generation,
        source=str(model_dir),
        user_vectors=np.ascontiguousarray(model.user_vectors(), dtype=np.float32),
        index=index,
        state=index.snapshot(),
        users=IdLookup(_raw_ids(saved.user_map, model.n_users), "user"),
        catalogue=IdLookup(item_ids, "item"),
        model_items=IdLookup(item_ids, "item"),
        key_to_code=codes,
        code_to_key=codes.copy(),
        labels=labels,
        seen=seen,
        blocks=list(model.blocks()),
        representation=np.asarray(model.representation()),
    )
