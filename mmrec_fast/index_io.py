"""Saving and loading an :class:`~mmrec_fast.ItemIndex`: a directory of ``.npy`` arrays and a JSON manifest.

Layout (format version 1)::

    path/manifest.json   format, sizes, settings, and per array: file, shape, dtype, SHA-256
    path/items.npy       (I, d) float32, the live items sorted by external id
    path/ids.npy         (I,) int64, ascending external ids

The live content is saved (tombstones and pending rows folded in, as :meth:`ItemIndex.compact` would),
so a loaded index answers exactly as the saved one did. Writing follows :mod:`mmrec_fast._outputs`:
built in a hidden sibling and renamed into place, never over a user's file, over an existing saved
index only with ``overwrite=True``. Loading checks every array against the manifest (shape, dtype,
checksum); a missing, truncated or altered file is a ``ValueError`` naming ``path``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from . import index_state as state
from ._outputs import check_output_dir, make_staging_dir, replace_dir, sha256_file

__all__ = ["save_index", "load_index", "FORMAT", "FORMAT_VERSION"]

FORMAT = "mmrec_fast.ItemIndex"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
_ARRAYS = {"items": "items.npy", "ids": "ids.npy"}


def _read_manifest(directory: Path) -> dict | None:
    try:
        manifest = json.loads((directory / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


def _recognise(directory: Path) -> frozenset[str] | None:
    """The files a saved index consists of, or None when ``directory`` is not one."""
    manifest = _read_manifest(directory)
    if manifest is None:
        return None
    return frozenset([MANIFEST, *_ARRAYS.values()])


def save_index(index, path, *, overwrite: bool = False) -> Path:
    """Write ``index``'s live items and ids to the directory ``path``.

    Parameters
    ----------
    index : ItemIndex
        The index (its current snapshot is saved; concurrent writes are not waited for).
    path : str or os.PathLike
        A new or empty directory, or (with ``overwrite``) a directory holding a saved index only.
    overwrite : bool
        Replace an existing saved index at ``path``.

    Returns
    -------
    pathlib.Path
        The absolute directory written.
    """
    target = check_output_dir(path, argument="path", overwrite=overwrite, recognise=_recognise, what="saved item index")
    snap = index.snapshot()
    items, ids = state.live_content(snap)
    arrays: dict[str, np.ndarray] = {
        "items": np.ascontiguousarray(items, dtype=np.float32),
        "ids": np.arange(items.shape[0], dtype=np.int64) if ids is None else np.ascontiguousarray(ids, np.int64),
    }
    staging = make_staging_dir(target)
    try:
        entries = {}
        for name, arr in arrays.items():
            file = staging / _ARRAYS[name]
            np.save(file, arr, allow_pickle=False)
            entries[name] = {
                "file": _ARRAYS[name],
                "shape": list(arr.shape),
                "dtype": arr.dtype.str,
                "sha256": sha256_file(file),
            }
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "n_items": int(items.shape[0]),
            "dim": int(items.shape[1]),
            "saved_backend": index.backend_name,
            "item_block": index.item_block,
            "compact_fraction": index._compact_fraction,
            "arrays": entries,
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        replace_dir(staging, target, _recognise)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _load_array(directory: Path, entry, name: str, *, mmap: bool, verify: bool) -> np.ndarray:
    if not isinstance(entry, dict) or entry.get("file") != _ARRAYS[name]:
        raise ValueError(f"path: {str(directory)!r}: the manifest's entry for {name!r} is malformed")
    file = directory / entry["file"]
    if not file.is_file():
        raise ValueError(f"path: {str(directory)!r} is missing {entry['file']} (listed in {MANIFEST})")
    if verify and sha256_file(file) != entry.get("sha256"):
        raise ValueError(
            f"path: {entry['file']} in {str(directory)!r} does not match its SHA-256 checksum "
            "(corrupted, truncated or edited since it was saved)"
        )
    try:
        arr = np.load(file, mmap_mode="r" if mmap else None, allow_pickle=False)
    except Exception as exc:  # a truncated header or body: numpy raises ValueError/OSError/EOFError
        raise ValueError(f"path: {entry['file']} in {str(directory)!r} cannot be read ({exc})") from exc
    if list(arr.shape) != entry.get("shape") or arr.dtype.str != entry.get("dtype"):
        raise ValueError(
            f"path: {entry['file']} in {str(directory)!r} holds {arr.dtype.str} {list(arr.shape)}, "
            f"the manifest says {entry.get('dtype')} {entry.get('shape')}"
        )
    return arr


def load_index(path, *, mmap: bool = True, backend: str = "auto", item_block=None, verify: bool = True):
    """Read an index written by :func:`save_index`.

    Parameters
    ----------
    path : str or os.PathLike
        The saved index's directory.
    mmap : bool
        Map ``items.npy`` read-only instead of reading it into memory (the backend's packed copy, if it
        makes one, is still built in memory).
    backend, item_block
        As for :class:`~mmrec_fast.ItemIndex` (the saved backend is not imposed).
    verify : bool
        Check each array's SHA-256 against the manifest (reads every byte once).

    Returns
    -------
    ItemIndex
    """
    from .index import ItemIndex

    directory = Path(path)
    if not directory.is_dir():
        raise ValueError(f"path: {str(path)!r} is not a directory holding a saved item index")
    manifest = _read_manifest(directory)
    if manifest is None:
        raise ValueError(f"path: {str(path)!r} has no readable {MANIFEST} of a saved item index")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"path: saved item index format version {manifest.get('format_version')!r}; "
            f"this release reads {FORMAT_VERSION}"
        )
    entries = manifest.get("arrays")
    if not isinstance(entries, dict):
        raise ValueError(f"path: {str(path)!r}: the manifest lists no arrays")
    items = _load_array(directory, entries.get("items"), "items", mmap=mmap, verify=verify)
    ids = _load_array(directory, entries.get("ids"), "ids", mmap=False, verify=verify)
    if items.ndim != 2 or ids.shape != (items.shape[0],):
        raise ValueError(f"path: items {items.shape} and ids {ids.shape} of {str(path)!r} do not match")
    if ids.size > 1 and not np.all(ids[1:] > ids[:-1]):
        raise ValueError(f"path: ids.npy in {str(path)!r} is not strictly ascending")
    fraction = manifest.get("compact_fraction", 0.1)
    # A read-only map cannot be changed behind the index's back through Python: no private copy needed.
    return ItemIndex(items, ids=ids, backend=backend, item_block=item_block, compact_fraction=fraction, _copy=not mmap)
