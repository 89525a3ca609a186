"""Save a model to a directory (safetensors weights + JSON metadata + id maps) and load it back exactly.

On-disk format 2 (``docs/models_io.md``): ``model.json`` names the library, the format, the model
kind and sizes, and lists every file of the directory with its SHA-256 and size, and every array of
``weights.safetensors`` with its dtype and shape; :func:`load_model` verifies all of it before
building the model, so a truncated or altered file, or an id map of the wrong length, is an error
naming the file instead of a silently different model. Format 1 directories (no checksums) still load,
with a warning.

:func:`save_model` never destroys data: it writes into an absent path or an empty directory, replaces
a saved model only with ``overwrite=True``, and never replaces a file or a directory holding anything
it did not write (see :mod:`mmrec_fast._outputs`).
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._optional import require
from .._outputs import check_output_dir, list_files, make_staging_dir, replace_dir, sha256_file
from .base import Recommender, ScoreBlock, registered_kinds
from .config import TrainConfig
from .content import ContentProfile

__all__ = ["SavedModel", "save_model", "load_model", "saved_model_files", "FORMAT_VERSION"]

#: Format written by :func:`save_model`. 2 added the library marker, per-file SHA-256, the array
#: manifest and generic (registered) kinds; 1 is still read.
FORMAT_VERSION = 2
_LIBRARY = "mmrec_fast"
_WEIGHTS, _META, _USERS, _ITEMS = "weights.safetensors", "model.json", "user_map.json", "item_map.json"
_RESERVED = frozenset({_WEIGHTS, _META, _USERS, _ITEMS})
# Format 1 wrote no file list: these are the names it (and `mmrec-fast train`) put in a model directory.
_V1_FILES = frozenset({_WEIGHTS, _META, _USERS, _ITEMS, "train_matrix.npz", "item_labels.json"})
# Kinds with their own save code (torch state dicts, features); every other kind uses the
# Recommender.state()/from_state() protocol.
_BUILTIN_KINDS = ("bpr", "hybrid", "content")
# Array dtypes the generic protocol stores (safetensors' numeric types that NumPy has).
_ARRAY_KINDS = "biuf"


@dataclass
class SavedModel:
    """A loaded model with the id maps it was trained with (None if none were saved).

    Attributes
    ----------
    model : Recommender
        The rebuilt model (vectors bit-identical to the saved one's).
    user_map, item_map : IdMap or None
        Raw id <-> code maps saved with the model.
    metadata : dict
        The caller's ``metadata`` given to :func:`save_model`.
    directory : pathlib.Path or None
        Where the model was loaded from.
    extra_files : dict of str to pathlib.Path
        The ``extra_files`` saved with the model (verified against their checksums).
    """

    model: Recommender
    user_map: object | None
    item_map: object | None
    metadata: dict
    directory: Path | None = None
    extra_files: dict = field(default_factory=dict)


def saved_model_files(directory) -> frozenset[str] | None:
    """The files a saved model directory consists of, or None if ``directory`` is not one.

    A directory is recognised by its ``model.json``: a JSON object written by this library (format 2:
    ``"library": "mmrec_fast"`` and the list of files; format 1: ``format`` 1 and a ``kind``).
    """
    meta_path = Path(directory) / _META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict):
        return None
    if meta.get("library") == _LIBRARY and isinstance(meta.get("files"), dict):
        return frozenset(meta["files"]) | {_META}
    if meta.get("format") == 1 and isinstance(meta.get("kind"), str):
        return _V1_FILES
    return None


# -- saving -----------------------------------------------------------------------------------------


def _is_factor_model(model) -> bool:
    """``isinstance(model, FactorModel)`` without importing torch (no FactorModel exists before it is)."""
    factor = sys.modules.get("mmrec_fast.models.factor")
    return factor is not None and isinstance(model, factor.FactorModel)


def _arrays_of(model: Recommender) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays to store and the kind-specific JSON entries of ``model.json``."""
    if model.kind in _BUILTIN_KINDS and _is_factor_model(model):
        arrays = {name: t.numpy() for name, t in model.state_tensors().items()}
        return arrays, {
            "config": model.config.to_dict(),
            "feature_blocks": [[b.name, b.start, b.stop] for b in model.feature_blocks],
        }
    if model.kind == "content" and isinstance(model, ContentProfile):
        return (
            {"features": model.features, "users": model.user_vectors()},
            {
                "feature_blocks": [[b.name, b.start, b.stop] for b in model.feature_blocks],
                "use_values": model.use_values,
            },
        )
    registered = registered_kinds().get(model.kind)
    if registered is not type(model):
        # A subclass that inherits its parent's kind would load back as the parent: refuse.
        raise ValueError(
            f"model: a {type(model).__name__} cannot be saved: its kind {model.kind!r} is "
            + ("not registered" if registered is None else f"registered to {registered.__name__}")
            + "; give the class its own `kind` and implement state()/from_state()"
        )
    try:
        arrays, params = model.state()
    except NotImplementedError as exc:
        raise ValueError(f"model: {exc}") from None
    if not isinstance(arrays, dict) or not isinstance(params, dict):
        raise TypeError(
            f"{type(model).__name__}.state() must return (dict of arrays, dict of params), "
            f"got ({type(arrays).__name__}, {type(params).__name__})"
        )
    for name, value in arrays.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray) or value.dtype.kind not in _ARRAY_KINDS:
            raise TypeError(
                f"{type(model).__name__}.state(): array {name!r} must be a NumPy array of a bool, "
                f"integer or float dtype, got {type(value).__name__} "
                f"{getattr(value, 'dtype', '')}".rstrip()
            )
    try:
        json.dumps(params, allow_nan=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{type(model).__name__}.state(): params must be plain JSON values ({exc})") from None
    return arrays, {"params": params}


def _storable(array: np.ndarray) -> np.ndarray:
    """C-contiguous, native byte order (what safetensors stores); values unchanged."""
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    return array if array.flags.c_contiguous else array.copy(order="C")


def _default_file_mode(directory: Path) -> int:
    """The permission bits a new file gets here (the process umask applied), found by making one."""
    probe = directory / ".mode-probe"
    probe.touch()
    try:
        return probe.stat().st_mode & 0o777
    finally:
        probe.unlink()


def _check_extra_files(extra_files) -> dict[str, Callable[[Path], object]]:
    if extra_files is None:
        return {}
    if not isinstance(extra_files, Mapping):
        raise TypeError(f"extra_files: expected a mapping of file name -> writer, got {type(extra_files).__name__}")
    for name, writer in extra_files.items():
        if (
            not isinstance(name, str)
            or not name
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or name.startswith(".")
        ):
            raise ValueError(f"extra_files: {name!r} is not a plain, visible file name")
        if name in _RESERVED:
            raise ValueError(f"extra_files: {name!r} is one of the model's own files")
        if not callable(writer):
            raise TypeError(f"extra_files[{name!r}]: expected a callable writer(path), got {type(writer).__name__}")
    return dict(extra_files)


def save_model(
    model: Recommender,
    directory,
    *,
    user_map=None,
    item_map=None,
    metadata: dict | None = None,
    overwrite: bool = False,
    extra_files: Mapping[str, Callable[[Path], object]] | None = None,
) -> Path:
    """Write ``model`` to ``directory``, atomically and without destroying anything.

    Layout (format 2, see ``docs/models_io.md``): ``weights.safetensors`` (every array, bit-exact),
    ``model.json`` (library marker, format, kind, sizes, score blocks, training history, caller
    metadata, the kind's settings, the dtype and shape of every array, and the SHA-256 and size of
    every file), ``user_map.json`` / ``item_map.json`` (:class:`mmrec_fast.data.IdMap`) when given,
    and any ``extra_files``. Everything is written into a hidden sibling directory that is then
    renamed into place, so a crash or Ctrl-C never leaves a half-written model.

    Parameters
    ----------
    model : Recommender
        ``"bpr"``, ``"hybrid"``, ``"content"``, or any registered kind implementing
        :meth:`Recommender.state` / :meth:`Recommender.from_state`.
    directory : str or os.PathLike
        Where to write. Must be absent (parents are created), an empty directory, or -- with
        ``overwrite=True`` -- a model directory this function wrote that holds nothing else.
        A regular file, a symbolic link or a directory with other content is never replaced.
    user_map, item_map : IdMap, optional
        Raw id maps; their lengths must equal the model's user and item counts.
    metadata : dict, optional
        Plain-JSON caller data, returned by :func:`load_model` as ``SavedModel.metadata``.
    overwrite : bool
        Allow replacing an existing saved model.
    extra_files : mapping of str to callable, optional
        ``name -> writer(path)``: more files to store (and checksum) in the directory, e.g. the
        training matrix. Names must be plain file names other than the model's own.

    Returns
    -------
    pathlib.Path
        The model directory.

    Raises
    ------
    ValueError
        ``directory`` may not be replaced (the message says why), a map's length is wrong, or the
        model cannot be saved.
    """
    save_file = require("safetensors.numpy", extra="models", feature="saving a model").save_file

    if not isinstance(model, Recommender):
        raise TypeError(f"model: expected a Recommender, got {type(model).__name__}")
    extras = _check_extra_files(extra_files)
    if metadata is not None and not isinstance(metadata, dict):
        raise TypeError(f"metadata: expected a dict, got {type(metadata).__name__}")
    target = check_output_dir(
        directory, argument="directory", overwrite=overwrite, recognise=saved_model_files, what="saved model"
    )
    for name, mapping, size in (("user_map", user_map, model.n_users), ("item_map", item_map, model.n_items)):
        if mapping is not None and len(mapping) != size:
            raise ValueError(f"{name} has {len(mapping)} ids, the model has {size}")
    arrays, kind_entries = _arrays_of(model)
    arrays = {name: _storable(np.asarray(a)) for name, a in arrays.items()}
    meta = {
        "library": _LIBRARY,
        "format": FORMAT_VERSION,
        "kind": model.kind,
        "n_users": int(model.n_users),
        "n_items": int(model.n_items),
        "blocks": [[b.name, b.start, b.stop] for b in model.blocks()],
        "history": getattr(model, "history", []),
        "metadata": metadata or {},
        **kind_entries,
        "arrays": {name: {"dtype": str(a.dtype), "shape": list(a.shape)} for name, a in arrays.items()},
    }
    staging = make_staging_dir(target)
    try:
        save_file(arrays, str(staging / _WEIGHTS))
        # safetensors creates its file with mode 0600; give it the mode every other file here gets.
        os.chmod(staging / _WEIGHTS, _default_file_mode(staging))
        if user_map is not None:
            user_map.save(staging / _USERS)
        if item_map is not None:
            item_map.save(staging / _ITEMS)
        for name, writer in extras.items():
            writer(staging / name)
            if not (staging / name).is_file():
                raise ValueError(f"extra_files[{name!r}]: the writer did not create the file")
        written = list_files(staging)
        meta["files"] = {
            name: {"sha256": sha256_file(staging / name), "bytes": (staging / name).stat().st_size} for name in written
        }
        (staging / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        replace_dir(staging, target, saved_model_files)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


# -- loading ----------------------------------------------------------------------------------------

_TYPE_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list", dict: "an object"}


def _require(meta: dict, key: str, types, where: Path, *, what: str = ""):
    if key not in meta:
        raise ValueError(f"{where}: missing key {key!r}")
    value = meta[key]
    # bool is an int in Python, but `"n_users": true` is not a count.
    if not isinstance(value, types) or (isinstance(value, bool) and types is not bool):
        expected = what or _TYPE_NAMES.get(types, types.__name__)
        raise ValueError(f"{where}: {key!r} must be {expected}, got {type(value).__name__} {value!r:.60}")
    return value


def _blocks(value, key: str, where: Path) -> list[ScoreBlock]:
    ok = isinstance(value, list) and all(
        isinstance(b, list)
        and len(b) == 3
        and isinstance(b[0], str)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in b[1:])
        for b in value
    )
    if not ok:
        raise ValueError(f"{where}: {key!r} must be a list of [name, start, stop], got {value!r:.80}")
    return [ScoreBlock(*b) for b in value]


def _read_meta(path: Path) -> dict:
    meta_path = path / _META
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{meta_path}: not UTF-8 JSON ({exc.reason})") from None
    except ValueError as exc:
        raise ValueError(f"{meta_path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{meta_path}: expected a JSON object, got {type(meta).__name__}")
    fmt = meta.get("format")
    if fmt not in (1, FORMAT_VERSION) or isinstance(fmt, bool):
        hint = " (written by a newer mmrec_fast?)" if isinstance(fmt, int) and fmt > FORMAT_VERSION else ""
        raise ValueError(f"{meta_path}: unsupported format {fmt!r}{hint}; this version reads 1 and {FORMAT_VERSION}")
    _require(meta, "kind", str, meta_path)
    for key in ("n_users", "n_items"):
        if _require(meta, key, int, meta_path) < 0:
            raise ValueError(f"{meta_path}: {key!r} must be >= 0, got {meta[key]}")
    if fmt == FORMAT_VERSION:
        if meta.get("library") != _LIBRARY:
            raise ValueError(f'{meta_path}: not written by mmrec_fast (no "library": "mmrec_fast")')
        _require(meta, "files", dict, meta_path, what="an object of file entries")
        _require(meta, "arrays", dict, meta_path, what="an object of array entries")
    for key, types in (("history", list), ("metadata", dict)):
        if key in meta and not isinstance(meta[key], types):
            raise ValueError(f"{meta_path}: {key!r} must be {_TYPE_NAMES[types]}, got {type(meta[key]).__name__}")
    return meta


def _verify_files(path: Path, meta: dict) -> None:
    """Every listed file exists with the recorded size and SHA-256 (format 2)."""
    meta_path = path / _META
    if _WEIGHTS not in meta["files"]:
        raise ValueError(f"{meta_path}: the file list has no {_WEIGHTS}")
    for name, entry in meta["files"].items():
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", _META):
            raise ValueError(f"{meta_path}: bad file name {name!r} in the file list")
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and isinstance(entry.get("bytes"), int)
            and not isinstance(entry.get("bytes"), bool)
        ):
            raise ValueError(f'{meta_path}: file entry {name!r} must be {{"sha256": str, "bytes": int}}')
        file = path / name
        if not file.is_file():
            raise ValueError(f"{file}: missing (listed in {_META})")
        size = file.stat().st_size
        if size != entry["bytes"]:
            raise ValueError(f"{file}: {size} bytes, but {entry['bytes']} were saved (truncated or replaced)")
        if sha256_file(file) != entry["sha256"]:
            raise ValueError(
                f"{file}: SHA-256 differs from the one saved in {_META} (the file is damaged or was altered)"
            )


def _read_arrays(path: Path, meta: dict) -> dict[str, np.ndarray]:
    load_file = require("safetensors.numpy", extra="models", feature="loading a model").load_file

    weights = path / _WEIGHTS
    try:
        arrays = load_file(str(weights))
    except Exception as exc:  # safetensors raises its own SafetensorError (not a ValueError) on bad bytes
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from None
    if meta["format"] == 1:
        return arrays
    manifest = meta["arrays"]
    if set(manifest) != set(arrays):
        raise ValueError(f"{weights}: holds arrays {sorted(arrays)}, {_META} lists {sorted(manifest)}")
    for name, entry in manifest.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("shape"), list):
            raise ValueError(f'{path / _META}: array entry {name!r} must be {{"dtype": str, "shape": list}}')
        got = (str(arrays[name].dtype), list(arrays[name].shape))
        if got != (entry.get("dtype"), entry["shape"]):
            raise ValueError(
                f"{weights}: array {name!r} is {got[0]} {got[1]}, {_META} says {entry.get('dtype')} {entry['shape']}"
            )
    return arrays


def _need(arrays: dict, names, kind: str, path: Path) -> None:
    missing = sorted(set(names) - set(arrays))
    if missing:
        raise ValueError(f"{path / _WEIGHTS}: a {kind!r} model needs arrays {missing}")


def _float_matrix(arrays: dict, name: str, path: Path) -> np.ndarray:
    value = arrays[name]
    if value.ndim != 2 or value.dtype != np.float32:
        raise ValueError(
            f"{path / _WEIGHTS}: array {name!r} must be a float32 matrix, got {value.dtype} {list(value.shape)}"
        )
    return value


def _build(path: Path, meta: dict, arrays: dict[str, np.ndarray], device: str | None) -> Recommender:
    meta_path = path / _META
    kind = meta["kind"]
    if kind in ("bpr", "hybrid"):
        config_values = _require(meta, "config", dict, meta_path, what="an object")
        try:
            config = TrainConfig.from_dict({**config_values, **({"device": device} if device else {})})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{meta_path}: 'config': {exc}") from None
        blocks = _blocks(meta.get("feature_blocks", []), "feature_blocks", meta_path)
        torch = require("torch", extra="models", feature=f"loading a {kind!r} model")
        from .factor import BPRMF, HybridMF

        if kind == "bpr":
            model = BPRMF(meta["n_users"], meta["n_items"], config)
        else:
            _need(arrays, ["features"], kind, path)
            model = HybridMF(
                meta["n_users"],
                meta["n_items"],
                _float_matrix(arrays, "features", path).copy(),
                config,
                feature_blocks=blocks,
            )
        try:
            model.load_state_tensors({name: torch.from_numpy(a.copy()) for name, a in arrays.items()})
        except RuntimeError as exc:  # torch's state-dict mismatch: names or shapes
            detail = " ".join(str(exc).split())
            raise ValueError(
                f"{path / _WEIGHTS}: does not fit a {kind!r} model of {meta_path}: {detail[:400]}"
            ) from None
        return model
    if kind == "content":
        _need(arrays, ["features", "users"], kind, path)
        features, users = _float_matrix(arrays, "features", path), _float_matrix(arrays, "users", path)
        if users.shape[1] != features.shape[1]:
            raise ValueError(f"{path / _WEIGHTS}: 'users' has {users.shape[1]} columns, 'features' {features.shape[1]}")
        use_values = _require(meta, "use_values", bool, meta_path)
        model = ContentProfile(
            features.copy(),
            use_values=use_values,
            feature_blocks=_blocks(meta.get("feature_blocks", []), "feature_blocks", meta_path),
        )
        model._users = np.ascontiguousarray(users.copy())
        return model
    cls = registered_kinds().get(kind)
    if cls is None or meta["format"] == 1:
        raise ValueError(
            f"{meta_path}: unknown model kind {kind!r}; known: {sorted(registered_kinds())} "
            f"(import the module that defines it first)"
        )
    params = _require(meta, "params", dict, meta_path, what="an object")
    try:
        return cls.from_state({name: a.copy() for name, a in arrays.items()}, params)
    except NotImplementedError as exc:
        raise ValueError(f"{meta_path}: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: the saved state does not rebuild a {cls.__name__}: {exc!r}") from None


def _cross_check(path: Path, meta: dict, model: Recommender) -> None:
    meta_path = path / _META
    for key in ("n_users", "n_items"):
        if getattr(model, key) != meta[key]:
            raise ValueError(
                f"{path / _WEIGHTS}: the weights hold {getattr(model, key)} {key[2:]}, {_META} says {meta[key]}"
            )
    saved_blocks = _blocks(_require(meta, "blocks", list, meta_path), "blocks", meta_path)
    if saved_blocks != list(model.blocks()):
        raise ValueError(
            f"{meta_path}: score blocks {[(b.name, b.start, b.stop) for b in saved_blocks]} "
            f"differ from the rebuilt model's {[(b.name, b.start, b.stop) for b in model.blocks()]}"
        )
    users, items = model.user_vectors(), model.item_vectors()
    for name, vectors, n in (("user", users, meta["n_users"]), ("item", items, meta["n_items"])):
        if vectors.shape[0] != n or (saved_blocks and vectors.shape[1] != max(b.stop for b in saved_blocks)):
            raise ValueError(
                f"{path / _WEIGHTS}: {name} vectors have shape {list(vectors.shape)}, which does not match {_META}"
            )


def _read_map(path: Path, name: str, expected: int, label: str):
    from ..data import IdMap

    file = path / name
    try:
        mapping = IdMap.load(file)
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 ({exc.reason})") from None
    except ValueError as exc:
        raise ValueError(f"{file}: {exc}") from None
    if len(mapping) != expected:
        raise ValueError(f"{file}: {len(mapping)} {label} ids, the model has {expected} {label}s")
    return mapping


def load_model(directory, *, device: str | None = None) -> SavedModel:
    """Load what :func:`save_model` wrote, after checking it; the vectors are bit-identical.

    Checks, each failure a ``ValueError`` naming the file: ``model.json`` is a JSON object with
    the keys and types of its format; every listed file has its recorded size and SHA-256 (format 2);
    the arrays have the listed names, dtypes and shapes; the model rebuilt from them has the saved
    user and item counts and score blocks; each id map has as many ids as the model has users/items.
    A format 1 directory (saved before checksums existed) loads with a ``UserWarning``: re-save it
    to protect it.

    Parameters
    ----------
    directory : str or os.PathLike
        A directory written by :func:`save_model`.
    device : str, optional
        Override the saved training device (e.g. ``"cpu"`` to serve a GPU-trained model).

    Returns
    -------
    SavedModel
    """
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"directory: expected a path, got {type(directory).__name__}")
    path = Path(directory)
    if not path.is_dir() or not (path / _META).is_file() or not (path / _WEIGHTS).is_file():
        raise ValueError(f"directory {str(path)!r} is not a saved model (needs {_META} and {_WEIGHTS})")
    meta = _read_meta(path)
    if meta["format"] == 1:
        warnings.warn(
            f"{path}: saved in format 1, without checksums; its files cannot be verified. "
            f"Save it again to upgrade it to format {FORMAT_VERSION}",
            UserWarning,
            stacklevel=2,
        )
        listed = sorted(_V1_FILES & set(os.listdir(path)))
    else:
        _verify_files(path, meta)
        listed = sorted(meta["files"])
    model = _build(path, meta, _read_arrays(path, meta), device)
    _cross_check(path, meta, model)
    history = meta.get("history", [])
    model.history = history
    user_map = _read_map(path, _USERS, meta["n_users"], "user") if _USERS in listed else None
    item_map = _read_map(path, _ITEMS, meta["n_items"], "item") if _ITEMS in listed else None
    extras = {name: path / name for name in listed if name not in _RESERVED}
    return SavedModel(model, user_map, item_map, meta.get("metadata", {}), path, extras)
