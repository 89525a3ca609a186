"""A prepared item index: items validated, converted and packed once for repeated queries, kept live under
stable external ids (add / update / remove through snapshot swaps; see :mod:`mmrec_fast.index_state`)."""

from __future__ import annotations

import threading

import numpy as np

from . import _arrays, int8, validation
from . import index_state as state
from .backends import BlockConfig, get_backend
from .index_query import query

__all__ = ["ItemIndex"]


class ItemIndex:
    """Item embeddings kept ready for queries, optionally a live catalogue with stable external ids.

    Building the index costs one pass over the items (validation, float32 conversion, packing for the
    backend); every :meth:`topk` then skips that work. Items carry int64 external ids (``ids``, default
    ``0 .. I-1``); :meth:`add`, :meth:`update` and :meth:`remove` change the catalogue while other threads
    query it, and results always speak external ids. See ``docs/index.md``.

    Parameters
    ----------
    items : array-like, shape (I, d)
        Item embeddings (NumPy, torch or CuPy; float16/32/64 or integer).
    ids : array-like of int, shape (I,), optional
        Distinct external ids (>= 0) of the rows of ``items``; default ``0 .. I-1``. Any order: rows are
        kept sorted by id, so ties go to the lower external id whatever the insertion order.
    backend : str
        "auto", "native", "numba", "numpy", "cuda", "cupy" or "torch" (see
        :func:`mmrec_fast.available_backends`). With "cuda", "cupy" or "torch", torch tensors and CuPy
        arrays stay on their device and host items are uploaded once.
    item_block : int, optional
        Items per block of the tiled kernel (``None``: the backend's cache-sized default).
    compact_fraction : float
        Compact automatically once tombstones plus pending rows exceed this fraction of the live items
        (``0``: compact on every write, so the index is always exactly what a fresh build would be).
    precision : {"fp32", "int8", "auto"}
        The default ``precision`` of :meth:`topk` (see :func:`mmrec_fast.topk`). "int8" (native backend
        only) quantises the items now and keeps no packed float32 copy (:meth:`memory_usage`: the int8
        form is <= 0.3x of that copy at d >= 64); float32 queries still work, packing blocks on the fly.
        Otherwise the int8 form is built on the first query that runs in int8, and both forms are kept.

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> rng = np.random.default_rng(0)
    >>> index = mf.ItemIndex(rng.normal(size=(1000, 16)))
    >>> result = index.topk(rng.normal(size=(3, 16)), k=5)
    >>> result.indices.shape
    (3, 5)
    >>> live = mf.ItemIndex(rng.normal(size=(3, 16)), ids=[10, 20, 30])
    >>> live.add([40], rng.normal(size=(1, 16))); live.remove([10])
    >>> live.ids.tolist()
    [20, 30, 40]
    """

    def __init__(
        self,
        items,
        ids=None,
        *,
        backend: str = "auto",
        item_block: int | None = None,
        compact_fraction: float = 0.1,
        precision: str = "fp32",
        _persistent: bool = True,
        _users=None,
        _copy: bool = True,
    ):
        self._backend = get_backend(
            backend, arrays=(items,) if _users is None else (_users, items), macs=_macs(_users, items)
        )
        if getattr(self._backend, "array_api", False):
            # GPU-capable backends keep torch / CuPy items where they are (validated in place).
            valid = validation.as_float_matrix_any(
                items, "items", keep_half=getattr(self._backend, "half_inputs", False)
            )
        else:
            valid = validation.as_float_matrix(items, "items")
        ext = None
        if ids is not None:
            ext = state.as_external_ids(ids, "ids", unique=True)
            if ext.shape[0] != valid.shape[0]:
                raise ValueError(f"ids: has {ext.shape[0]} ids for {valid.shape[0]} rows of items")
            if ext.size > 1 and np.any(ext[1:] < ext[:-1]):
                order = np.argsort(ext, kind="stable")
                ext, valid = ext[order], _arrays.asnumpy(valid)[order]  # rows kept sorted by external id
            ext = state.canonical_ids(ext.copy())
        if _persistent and _copy:
            # The index owns what it validated: a caller mutating their array later must not bypass
            # the finiteness check (a NaN ranked first) or desynchronise packed and raw items.
            valid = _owned_copy(valid, items)
        self._precision = int8.check_precision(precision)
        if precision == "int8":
            int8.resolve_precision(precision, self._backend.name, on_gpu=False, n_users=0, k=1, ready=True)
        self._config = BlockConfig(item_block=item_block)
        self._item_block = item_block
        self._compact_fraction = _check_fraction(compact_fraction)
        self._write_lock = threading.Lock()
        # A temporary index (one topk call on a raw array) lets the backend skip a full packed copy.
        prepared = self._backend.prepare_items(valid, self._config, persistent=_persistent and self._float32_packed)
        # The overflow guard needs max |v|; computing it once here keeps repeated queries cheap.
        main = state.Segment(valid, ext, prepared, validation.max_abs(valid), self._backend, item_block)
        if self._precision == "int8":
            int8.cached_int8(main, valid)
        self._snap = state.Snapshot(main)

    @property
    def _float32_packed(self) -> bool:
        """Whether segments keep the backend's packed float32 copy (not for an int8 index)."""
        return self._precision != "int8"

    # -- the engine reads these (mf.topk / mf.score on an index): positional rows, so a plain index only --

    def _plain_main(self, what: str) -> state.Segment:
        snap = self._snap
        if not snap.plain:
            raise ValueError(
                f"items: this ItemIndex has external ids or changes not yet compacted, so its {what} are not "
                "the positional rows mf.topk/mf.score read; query it with index.topk(...) / index.similar_items(...) "
                "(results in external ids), or call index.compact() when its ids are 0..I-1"
            )
        return snap.main

    @property
    def backend(self):
        """The backend object the items are packed for."""
        return self._backend

    @property
    def item_block(self) -> int | None:
        """Items per kernel block (``None``: the backend's default)."""
        return self._item_block

    @property
    def items(self):
        """The validated (I, d) item rows (an index with default ids and no pending change only)."""
        return self._plain_main("items").items

    @property
    def prepared(self):
        """The backend's packed items (an index with default ids and no pending change only)."""
        return self._plain_main("packed items").prepared

    @property
    def max_abs(self) -> float:
        """Largest |v| over the items (the overflow guard's bound)."""
        snap = self._snap
        return snap.main.max_abs if snap.delta is None else max(snap.main.max_abs, snap.delta.max_abs)

    @property
    def n_items(self) -> int:
        """Number of live items I."""
        return self._snap.n_items

    def __len__(self) -> int:
        return self._snap.n_items

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return self._snap.main.dim

    @property
    def precision(self) -> str:
        """The default ``precision`` of :meth:`topk`."""
        return self._precision

    def memory_usage(self) -> dict[str, int]:
        """Bytes held by the live segments, per form.

        Returns
        -------
        dict
            ``"items"``: the validated float32 rows (kept at every precision: int8 survivors are rescored
            from them); ``"float32_packed"``: the backend's packed copy (0 when it packs on the fly);
            ``"int8"``: the int8 form (0 until built; :attr:`mmrec_fast.int8.Int8Items.nbytes`).
        """
        usage = {"items": 0, "float32_packed": 0, "int8": 0}
        for seg in self._snap.segments():
            usage["items"] += int(getattr(seg.items, "nbytes", 0))
            prepared = seg.prepared
            shared = getattr(prepared, "streaming", False) or prepared is seg.items
            usage["float32_packed"] += 0 if shared else int(getattr(prepared, "nbytes", 0))
            form = seg.cache.get("int8")
            usage["int8"] += 0 if form is None else form.nbytes
        return usage

    @property
    def backend_name(self) -> str:
        """Name of the backend the items are packed for."""
        return self._backend.name

    @property
    def ids(self) -> np.ndarray:
        """External ids of the live items, ascending (read-only)."""
        return self._snap.live_ids()

    @property
    def version(self) -> int:
        """Number of writes applied since construction (each add/update/remove/compact counts one)."""
        return self._snap.version

    @property
    def pending(self) -> int:
        """Tombstones plus rows added or updated since the last compaction."""
        return self._snap.n_pending

    def snapshot(self) -> state.Snapshot:
        """The current immutable state (queries on it are unaffected by later writes)."""
        return self._snap

    def __contains__(self, item_id) -> bool:
        return bool(self._snap.contains(np.asarray([item_id], dtype=np.int64))[0]) if int(item_id) >= 0 else False

    def vectors(self, ids) -> np.ndarray:
        """Float32 rows of live items, in the order of ``ids`` (``ValueError`` naming ``ids`` for an unknown id)."""
        return self._snap.vectors(state.as_external_ids(ids, "ids"), "ids")

    # -- queries --

    def topk(
        self,
        users,
        k: int,
        *,
        exclude=None,
        allow=None,
        ban=None,
        candidates=None,
        temperature=1.0,
        normalizer: bool = True,
        precision: str | None = None,
        backend: str = "auto",
        user_block=None,
        item_block=None,
        num_threads=None,
        progress=False,
    ):
        """Top-k against this index; arguments and result as :func:`mmrec_fast.topk`, ids external.

        ``precision`` ``None`` takes the index's own (:attr:`precision`).

        ``exclude`` / ``candidates`` (per user) and ``allow`` / ``ban`` (global) name external ids:
        eligible(u) = allow ∩ candidates(u) − ban − exclude(u). An id the index does not hold matches
        nothing. A boolean ``allow`` / ``ban`` mask is positional over :attr:`ids`. ``TopK.indices``
        holds external ids (-1 padding); ties go to the lower external id. The query runs on the
        snapshot current when it starts: a concurrent write is either wholly seen or not at all.
        """
        k = validation.check_k(k)
        temperature = validation.check_temperature(temperature)
        precision = int8.check_precision(self._precision if precision is None else precision)
        self.check_compatible(backend, item_block)
        options = dict(
            exclude=exclude,
            allow=allow,
            ban=ban,
            candidates=candidates,
            temperature=temperature,
            normalizer=normalizer,
            user_block=user_block,
            num_threads=num_threads,
            progress=progress,
        )
        snap = self._snap  # one snapshot for the whole query
        return query(snap, users, k, precision=precision, **options)

    def similar_items(self, item_ids, k: int, **options):
        """Items most like each of ``item_ids`` ("more like this"); see :func:`mmrec_fast.similar_items`."""
        from .similar import similar_in_index

        return similar_in_index(self, item_ids, k, **options)

    def check_compatible(self, backend: str, item_block) -> None:
        """A query may name this index's backend (or "auto") and item block (or None), nothing else."""
        if backend not in ("auto", self.backend_name):
            raise ValueError(
                f"backend: {backend!r} requested, but items is an ItemIndex prepared for {self.backend_name!r}"
            )
        if item_block is not None and item_block != self._item_block:
            raise ValueError(
                "item_block: an ItemIndex is packed with its own item_block; set it when building the index"
            )

    # -- writes: each builds a new snapshot off to the side and swaps it in --

    def add(self, ids, vectors) -> None:
        """Add new items. ``ids`` must be distinct and not in the index (``ValueError`` naming ``ids``)."""
        with self._write_lock:
            snap = self._snap
            ext, vecs = self._checked_rows(ids, vectors)
            present = snap.contains(ext)
            if present.any():
                raise ValueError(f"ids: id {int(ext[np.argmax(present)])} is already in the index; use update()")
            self._commit(state.add(snap, ext, vecs, self._segment))

    def update(self, ids, vectors) -> None:
        """Replace the vectors of items in the index (``ValueError`` naming ``ids`` for an unknown id)."""
        with self._write_lock:
            snap = self._snap
            ext, vecs = self._checked_rows(ids, vectors)
            self._require_present(snap, ext)
            self._commit(state.update(snap, ext, vecs, self._segment))

    def remove(self, ids) -> None:
        """Remove items (tombstones until the next compaction; ``ValueError`` naming ``ids`` for an unknown id)."""
        with self._write_lock:
            snap = self._snap
            ext = state.as_external_ids(ids, "ids", unique=True)
            self._require_present(snap, ext)
            self._commit(state.remove(snap, ext, self._segment))

    def compact(self) -> None:
        """Rebuild one packed segment of the live items (what a fresh index of the same content holds)."""
        with self._write_lock:
            if not self._snap.plain:
                self._snap = state.compact(self._snap, self._segment)

    def save(self, path, *, overwrite: bool = False):
        """Write the live items and ids to directory ``path``; see :func:`mmrec_fast.index_io.save_index`."""
        from .index_io import save_index

        return save_index(self, path, overwrite=overwrite)

    @classmethod
    def load(cls, path, *, mmap: bool = True, backend: str = "auto", item_block=None, verify: bool = True):
        """Read an index written by :meth:`save`; see :func:`mmrec_fast.index_io.load_index`."""
        from .index_io import load_index

        return load_index(path, mmap=mmap, backend=backend, item_block=item_block, verify=verify)

    def _checked_rows(self, ids, vectors) -> tuple[np.ndarray, np.ndarray]:
        ext = state.as_external_ids(ids, "ids", unique=True)
        vecs = validation.as_float_matrix(vectors, "vectors", dim=self.dim, dim_from="the index")
        if vecs.shape[0] != ext.shape[0]:
            raise ValueError(f"vectors: has {vecs.shape[0]} rows for {ext.shape[0]} ids")
        return ext, vecs.copy()  # the index owns its rows (the caller may reuse the array)

    @staticmethod
    def _require_present(snap: state.Snapshot, ext: np.ndarray) -> None:
        present = snap.contains(ext)
        if not present.all():
            raise ValueError(f"ids: id {int(ext[np.argmin(present)])} is not in the index")

    def _commit(self, snap: state.Snapshot) -> None:
        if snap.n_pending > self._compact_fraction * max(1, snap.n_items):
            snap = state.compact(snap, self._segment)
        self._snap = snap  # one reference assignment: readers see the old state or the new one

    def _segment(self, items: np.ndarray, ids: np.ndarray | None) -> state.Segment:
        items = np.ascontiguousarray(items, dtype=np.float32)
        items.flags.writeable = False
        prepared = self._backend.prepare_items(items, self._config, persistent=self._float32_packed)
        ids = None if ids is None else state.canonical_ids(ids)
        return state.Segment(items, ids, prepared, validation.max_abs(items), self._backend, self._item_block)

    def __repr__(self) -> str:
        extra = "" if self._precision == "fp32" else f", precision={self._precision!r}"
        return f"ItemIndex(n_items={self.n_items}, dim={self.dim}, backend={self.backend_name!r}{extra})"


def _check_fraction(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) or not value >= 0:
        raise ValueError(f"compact_fraction: expected a number >= 0, got {value!r}")
    return float(value)


def _owned_copy(validated, original):
    """``validated`` itself if it is already a private copy of ``original``, else a read-only copy."""
    fam = _arrays.family(validated)
    if fam == "torch":
        shared = _arrays.family(original) == "torch" and validated.data_ptr() == original.data_ptr()
        return validated.clone() if shared else validated
    if fam == "cupy":
        import cupy

        return validated.copy() if cupy.shares_memory(validated, original) else validated
    try:
        shared = np.shares_memory(validated, validation.to_numpy(original, "items"))
    except Exception:  # an exotic container: copy to be safe
        shared = True
    out = validated.copy() if shared else validated
    out.flags.writeable = False
    return out


def _macs(users, items) -> int | None:
    """U x I x d of a call, from shapes alone (``None`` when they are not known or not matrices yet)."""
    try:
        return int(users.shape[0]) * int(items.shape[0]) * int(items.shape[1])
    except (AttributeError, IndexError, TypeError):
        return None
