"""On-disk embedding cache keyed by content hash, model identity and preprocessing settings.

Layout::

    cache_dir/
      <name>-<namespace hash>/          one folder per (model, settings) namespace
        settings.json                   the namespace in clear text, for humans
        shard-<time>-<random>.npz       keys (hex SHA-256 of item content) + float32 vectors

Each encode call appends one shard per finished chunk. A shard is written to a temporary file in
the same folder, flushed, ``fsync``-ed and then ``os.replace``-d into place, so a reader (another
process too) sees either the whole shard or none of it; an interrupted write leaves only a
``.tmp`` file that readers ignore and :meth:`EmbeddingCache.clean` removes. A shard that cannot be
read (damaged on disk, wrong shape, NaN or infinite rows) is skipped with a warning and its items
are simply recomputed. A folder that cannot be written (read-only, full disk) costs one warning:
encoding goes on and returns its vectors uncached.

Lookups load every shard of the namespace into one in-memory key -> row map once, then only the
shards that appeared since, so re-encoding an unchanged catalogue costs a hash per item and a
dictionary lookup.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["EmbeddingCache", "namespace_digest"]

# Cache folders already warned about as unwritable (once per process each, not once per chunk).
_WARNED_READONLY: set[str] = set()


def namespace_digest(settings: dict) -> str:
    """Stable hex digest of a settings dictionary (JSON with sorted keys)."""
    blob = json.dumps(settings, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Content-addressed store of embedding rows for one model + settings namespace.

    Parameters
    ----------
    cache_dir : str or os.PathLike
        Root folder (created if missing). Several namespaces share it.
    settings : dict
        Model identity and preprocessing settings (``Encoder.settings()``); any change selects a
        different namespace, so stale rows are never returned.
    dim : int
        Row width; shards of another width are rejected as damaged.
    """

    def __init__(self, cache_dir, settings: dict, dim: int):
        if not isinstance(cache_dir, (str, os.PathLike)):
            raise ValueError(f"cache_dir: expected a directory path, got {type(cache_dir).__name__}")
        self.root = Path(cache_dir).expanduser()
        # A file (or a path through a file) can never hold shards: say so now, by name, instead of
        # failing later inside an encode.
        for part in (self.root, *self.root.parents):
            if part.exists() and not part.is_dir():
                raise ValueError(f"cache_dir: {self.root} is not a directory ({part} is a file)")
        self.settings = dict(settings)
        self.dim = int(dim)
        digest = namespace_digest(self.settings)
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", str(self.settings.get("name", "encoder")))[:48]
        self.path = self.root / f"{slug}-{digest[:20]}"
        self._index: dict[str, tuple[int, int]] = {}
        self._shards: list[np.ndarray] = []
        self._loaded: set[str] = set()
        #: False once a write failed (read-only folder, full disk): later chunks are not retried.
        self.writable = True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            info = self.path / "settings.json"
            if not info.exists():
                self._atomic_write_bytes(
                    info, json.dumps(self.settings, indent=1, sort_keys=True, default=str).encode("utf-8")
                )
        except OSError as exc:
            # A read-only cache still serves what it holds; encoding must not fail because of it.
            self._disable_writes(exc)

    # -- reading -------------------------------------------------------------------------------
    def _refresh(self) -> None:
        """Load shards that appeared since the last lookup (by this or another process)."""
        try:
            entries = sorted(os.listdir(self.path))
        except OSError:  # never created (read-only root) or removed meanwhile: nothing cached
            return
        for entry in entries:
            if not (entry.startswith("shard-") and entry.endswith(".npz")) or entry in self._loaded:
                continue
            self._loaded.add(entry)
            try:
                with np.load(self.path / entry, allow_pickle=False) as data:
                    keys, vectors = data["keys"], data["vectors"]
                if (
                    vectors.dtype != np.float32
                    or vectors.ndim != 2
                    or vectors.shape[1] != self.dim
                    or keys.shape != (vectors.shape[0],)
                ):
                    raise ValueError(f"unexpected shapes keys {keys.shape}, vectors {vectors.shape}")
                if keys.dtype.kind != "U":
                    raise ValueError(f"keys of dtype {keys.dtype}, expected text digests")
                if not np.isfinite(vectors).all():
                    # NaN/inf rows are damage (a torn write, a bad model run), never an embedding.
                    raise ValueError(
                        f"{int((~np.isfinite(vectors)).any(axis=1).sum())} row(s) hold NaN or infinite values"
                    )
            except Exception as exc:  # noqa: BLE001 - a damaged shard only costs recomputation
                warnings.warn(
                    f"embedding cache: ignoring unreadable shard {self.path / entry} ({exc}); "
                    f"its items will be re-encoded",
                    RuntimeWarning,
                    stacklevel=3,
                )
                continue
            shard_id = len(self._shards)
            self._shards.append(vectors)
            for row, key in enumerate(keys.tolist()):
                self._index[key] = (shard_id, row)

    def get_many(self, keys: Sequence[str]) -> list:
        """Rows for ``keys`` (hex digests); ``None`` where a key is not cached."""
        self._refresh()
        out = []
        for key in keys:
            hit = self._index.get(key)
            out.append(None if hit is None else self._shards[hit[0]][hit[1]])
        return out

    def __len__(self) -> int:
        self._refresh()
        return len(self._index)

    def __contains__(self, key: str) -> bool:
        self._refresh()
        return key in self._index

    # -- writing -------------------------------------------------------------------------------
    def put_many(self, keys: Sequence[str], vectors: np.ndarray) -> None:
        """Store rows (one new shard, written atomically). Keys already present are not rewritten."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(keys), self.dim):
            raise ValueError(f"vectors: expected shape {(len(keys), self.dim)}, got {vectors.shape}")
        self._refresh()
        finite = np.isfinite(vectors).all(axis=1)
        fresh: dict[str, int] = {}
        for row, key in enumerate(keys):
            # Non-finite rows are not stored: a reader would have to discard the whole shard.
            if finite[row] and key not in self._index and key not in fresh:
                fresh[key] = row
        if not fresh:
            return
        rows = list(fresh.values())
        key_arr = np.array(list(fresh.keys()), dtype="U64")
        vec_arr = vectors[rows]
        name = f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:12]}.npz"
        if self.writable:
            try:
                self._write_shard(name, key_arr, vec_arr)
            except OSError as exc:
                # The vectors are computed and correct: keep serving them from memory, uncached.
                self._disable_writes(exc)
        # Index the new rows directly (no need to re-read what we just wrote).
        self._loaded.add(name)
        shard_id = len(self._shards)
        self._shards.append(vec_arr)
        for row, key in enumerate(key_arr.tolist()):
            self._index[key] = (shard_id, row)

    def _write_shard(self, name: str, key_arr: np.ndarray, vec_arr: np.ndarray) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".tmp-", suffix=".npz")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, keys=key_arr, vectors=vec_arr)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path / name)
        except BaseException:
            with _suppress():
                os.unlink(tmp)
            raise

    def _disable_writes(self, exc: OSError) -> None:
        """Stop writing after the first failure, with one warning per cache folder and process."""
        self.writable = False
        if str(self.path) not in _WARNED_READONLY:
            _WARNED_READONLY.add(str(self.path))
            warnings.warn(
                f"embedding cache: cannot write to {self.path} ({type(exc).__name__}: {exc}); "
                f"vectors are returned but not cached",
                RuntimeWarning,
                stacklevel=4,
            )

    def clean(self) -> int:
        """Remove temporary files left by interrupted writes; returns how many were removed."""
        removed = 0
        try:
            entries = os.listdir(self.path)
        except OSError:
            return 0
        for entry in entries:
            if entry.startswith(".tmp-"):
                with _suppress():
                    os.unlink(self.path / entry)
                    removed += 1
        return removed

    @staticmethod
    def _atomic_write_bytes(path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def __repr__(self) -> str:
        return f"EmbeddingCache({str(self.path)!r})"


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)
