"""An immutable serving snapshot: a loaded model, its catalogue packed for the engine, and the id lookups.

Requests take a reference to the current snapshot when they start and use only it, so a reload or an
item update (which builds a *new* snapshot and swaps one reference) never changes what an in-flight
request sees. Catalogue rows and model item codes are kept apart: rows are what the engine indexes
(items may be added or removed after training), codes are what the model and its training matrix know.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from ..index import ItemIndex

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


def _raw_ids(id_map, n: int) -> np.ndarray:
    """The raw ids of an IdMap as int64 or str array (positions when the model has no map)."""
    if id_map is None:
        return np.arange(n, dtype=np.int64)
    ids = np.asarray(id_map.ids)
    return ids.astype(np.int64) if id_map.is_integer else ids.astype(str)


@dataclass(eq=False)
class Snapshot:
    """Everything one request needs, never mutated after construction (a new one is built instead).

    Attributes
    ----------
    model : Recommender
        The loaded model (fold-in, blocks).
    generation : int
        Increases with every swap; reported in responses so clients can tell which model answered.
    source : str
        The model directory it came from.
    user_vectors : ndarray (U, D) float32
    items : ndarray (I_cat, D) float32
        Catalogue rows (model items, minus removed, plus added).
    index : ItemIndex
        ``items`` prepared for the engine.
    users, catalogue : IdLookup
        External user ids -> user codes; external item ids -> catalogue rows.
    model_items : IdLookup
        External item ids -> model item codes (fold-in histories speak the model's items).
    row_to_code, code_to_row : ndarray of int64
        Catalogue row -> model item code (-1: added after training) and back (-1: removed).
    labels : ndarray of object, or None
        Catalogue row -> label (e.g. title).
    seen : scipy CSR (U, n_model_items) or None
        Training items per user (excluded by default, and the source of "because you liked").
    """

    model: object
    generation: int
    source: str
    user_vectors: np.ndarray
    items: np.ndarray
    index: ItemIndex
    users: IdLookup
    catalogue: IdLookup
    model_items: IdLookup
    row_to_code: np.ndarray
    code_to_row: np.ndarray
    labels: np.ndarray | None
    seen: sp.csr_matrix | None
    blocks: list = field(default_factory=list)
    representation: np.ndarray | None = None
    _cosine: ItemIndex | None = None
    _cosine_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def dim(self) -> int:
        """Width D of the user and item vectors."""
        return int(self.items.shape[1])

    def seen_rows(self, user_code: int) -> np.ndarray:
        """Catalogue rows of a known user's training items (removed items dropped)."""
        if self.seen is None:
            return np.empty(0, dtype=np.int64)
        codes = self.seen.indices[self.seen.indptr[user_code] : self.seen.indptr[user_code + 1]]
        rows = self.code_to_row[codes]
        return rows[rows >= 0]

    def seen_codes(self, user_code: int) -> np.ndarray:
        """Model item codes of a known user's training items."""
        if self.seen is None:
            return np.empty(0, dtype=np.int64)
        return self.seen.indices[self.seen.indptr[user_code] : self.seen.indptr[user_code + 1]].astype(np.int64)

    def cosine_index(self) -> ItemIndex:
        """The catalogue with unit-norm rows (built on first use, for cosine ``/similar``)."""
        with self._cosine_lock:
            if self._cosine is None:
                norms = np.linalg.norm(self.items, axis=1, keepdims=True)
                unit = np.divide(self.items, norms, out=np.zeros_like(self.items), where=norms > 0)
                self._cosine = ItemIndex(unit)
            return self._cosine

    def with_items(self, add_ids, add_vectors, add_labels, remove_ids, generation: int) -> Snapshot:
        """A new snapshot with items upserted (new id: appended; known id: vector/label replaced) and removed.

        The model, users and training matrix are shared; the catalogue is copied and re-packed.
        """
        keep = np.ones(len(self.catalogue), dtype=bool)
        if len(remove_ids):
            keep[self.catalogue.positions(remove_ids, "remove")] = False
        items = self.items.copy()
        labels = None if self.labels is None else self.labels.copy()
        new_rows = []
        if len(add_ids):
            pos = self.catalogue.positions(add_ids, "add.id", missing_ok=True)
            if len(set(self.catalogue.convert(add_ids, "add.id").tolist())) != len(add_ids):
                raise ClientError("add.id", "an id appears twice")
            for i, p in enumerate(pos):
                if p >= 0:
                    if not keep[p]:
                        raise ClientError("add.id", f"id {add_ids[i]!r} is both added and removed")
                    items[p] = add_vectors[i]
                    if labels is not None and add_labels[i] is not None:
                        labels[p] = add_labels[i]
                else:
                    new_rows.append(i)
        ext = self.catalogue.ids
        row_to_code = self.row_to_code
        if new_rows:
            new_ids = self.catalogue.convert([add_ids[i] for i in new_rows], "add.id")
            ext = np.concatenate([ext, new_ids.astype(ext.dtype)])
            items = np.vstack([items, add_vectors[new_rows]])
            row_to_code = np.concatenate([row_to_code, np.full(len(new_rows), -1, dtype=np.int64)])
            keep = np.concatenate([keep, np.ones(len(new_rows), dtype=bool)])
            if labels is not None:
                extra = np.asarray([add_labels[i] for i in new_rows], dtype=object)
                labels = np.concatenate([labels, extra])
        items, ext, row_to_code = items[keep], ext[keep], row_to_code[keep]
        labels = None if labels is None else labels[keep]
        code_to_row = np.full(self.code_to_row.shape[0], -1, dtype=np.int64)
        known = row_to_code >= 0
        code_to_row[row_to_code[known]] = np.flatnonzero(known)
        index = ItemIndex(np.ascontiguousarray(items, dtype=np.float32))
        return replace(
            self,
            generation=generation,
            items=index.items,  # the index's own read-only copy: one copy of the catalogue, not two
            index=index,
            catalogue=IdLookup(ext, "item"),
            row_to_code=row_to_code,
            code_to_row=code_to_row,
            labels=labels,
            _cosine=None,
            _cosine_lock=threading.Lock(),
        )


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
    index = ItemIndex(np.ascontiguousarray(model.item_vectors(), dtype=np.float32))
    item_ids = _raw_ids(saved.item_map, model.n_items)
    codes = np.arange(model.n_items, dtype=np.int64)
    return Snapshot(
        model=model,
        generation=generation,
        source=str(model_dir),
        user_vectors=np.ascontiguousarray(model.user_vectors(), dtype=np.float32),
        items=index.items,
        index=index,
        users=IdLookup(_raw_ids(saved.user_map, model.n_users), "user"),
        catalogue=IdLookup(item_ids, "item"),
        model_items=IdLookup(item_ids, "item"),
        row_to_code=codes,
        code_to_row=codes.copy(),
        labels=labels,
        seen=seen,
        blocks=list(model.blocks()),
        representation=np.asarray(model.representation()),
    )
