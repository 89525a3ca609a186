"""The encoder interface, the per-item error policy and its report.

Every encoder (text, image, audio, bag-of-words) has the same small surface:

``encode(batch) -> np.ndarray``
    float32 ``(n, dim)``, one row per input item, in input order.
``encode_with_report(batch, ids=...) -> EncodeResult``
    the same rows plus which items failed, where and why.
``dim``, ``name``
    the embedding width and a human-readable model name.

Items are processed in three stages -- *read* (content hash for the cache: reading a file's bytes),
*preprocess* (decode, clean, resize, resample ...) and *embed* (the batched model forward pass). A
bad item (corrupt file, empty text, missing path, unsupported format) fails in *read* or
*preprocess*; what happens then is the error policy:

``"raise"`` (default)
    stop at the first failure with :class:`EncodingError`, which names the item's id, index and
    stage and chains the original exception. Every item is *read* (hashed) before any is
    preprocessed, so a missing file or a non-string text anywhere in the batch is found before a
    corrupt file earlier in the batch;
``"skip"``
    drop failed items: ``encode`` returns only the good rows (``EncodeResult.ids`` says whose);
``"zero"``
    keep one row per input; failed items get an all-zero row (they score 0 against every user,
    and :func:`mmrec_fast.encoders.fuse` treats them as missing).

Under ``"skip"`` and ``"zero"`` every failure is listed in ``EncodeResult.errors`` and one
:class:`EncodingWarning` summarises them, so nothing is lost silently. Errors in the *embed* stage
are not item-specific (they mean a broken model or out-of-memory) and always raise.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from .. import validation

__all__ = [
    "Encoder",
    "EncodeResult",
    "ItemError",
    "EncodingError",
    "EncodingWarning",
    "ON_ERROR_POLICIES",
    "check_on_error",
    "resolve_device",
    "torch_threads",
    "map_with_policy",
]

ON_ERROR_POLICIES = ("raise", "skip", "zero")


class ItemError(NamedTuple):
    """One item that could not be encoded."""

    id: Any
    """The caller's id for the item (its position when no ids were given)."""
    index: int
    """Position of the item in the input batch."""
    stage: str
    """``"read"`` or ``"preprocess"``."""
    error: str
    """Exception type name (``"FileNotFoundError"``, ``"UnidentifiedImageError"`` ...)."""
    message: str
    """The exception message."""

    def __str__(self) -> str:
        return f"item {self.id!r} (index {self.index}) failed in {self.stage}: {self.error}: {self.message}"


class EncodingError(ValueError):
    """Raised under ``on_error="raise"`` for the first item that cannot be encoded.

    Attributes
    ----------
    errors : list of ItemError
        The failing item(s).
    """

    def __init__(self, encoder_name: str, errors: Sequence[ItemError]):
        self.errors = list(errors)
        first = self.errors[0]
        super().__init__(
            f"{encoder_name}: {first} (on_error='raise'; use on_error='skip' or 'zero' to "
            f"encode the other items and get a per-item report)"
        )


class EncodingWarning(UserWarning):
    """Issued once per call when items failed under ``on_error="skip"`` or ``"zero"``."""


@dataclass
class EncodeResult:
    """Embeddings plus the per-item error report of one ``encode_with_report`` call.

    Attributes
    ----------
    embeddings : np.ndarray
        float32 ``(m, dim)``: ``m = n`` under ``"zero"`` (zero rows for failures), the number of
        good items under ``"skip"``.
    ids : list
        The id of each row of ``embeddings``.
    ok : np.ndarray
        bool ``(n,)`` over the *input* items: True where the item was encoded.
    errors : list of ItemError
        One entry per failed item, in input order.
    cache_hits : int
        Items served from the embedding cache.
    """

    embeddings: np.ndarray
    ids: list
    ok: np.ndarray
    errors: list = field(default_factory=list)
    cache_hits: int = 0

    @property
    def failed_ids(self) -> list:
        """Ids of the items that failed, in input order."""
        return [e.id for e in self.errors]


def check_on_error(on_error: str, argument: str = "on_error") -> str:
    """Validate an error policy name."""
    if on_error not in ON_ERROR_POLICIES:
        raise ValueError(f"{argument}: must be one of {ON_ERROR_POLICIES}, got {on_error!r}")
    return on_error


def check_positive_int(value, argument: str, *, allow_none: bool = False):
    """Validate a positive integer argument (``batch_size``, ``num_threads`` ...); ``None`` if allowed."""
    if value is None and allow_none:
        return None
    return validation.check_positive_int(value, argument)


def resolve_device(device) -> str:
    """Normalise a device request to a torch device string.

    ``"auto"`` picks ``"cuda"`` when torch sees a GPU, else ``"cpu"``. ``"cuda"`` without a GPU is a
    ``ValueError`` (asking for a GPU and silently getting the CPU would hide a setup problem).
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device, got {device!r}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    kind = device.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device: expected 'cpu', 'cuda', 'cuda:N', 'auto' or a torch.device, got {device!r}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device: {device!r} requested but torch sees no CUDA device "
            f"(torch {torch.__version__}); use device='cpu' or 'auto'"
        )
    return device


@contextlib.contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Run a block with ``torch.set_num_threads(num_threads)``, restoring the previous value after.

    torch's intra-op thread count is process-global; restoring it keeps one encoder's setting from
    leaking into the rest of the program (the engine's own OpenMP pool is separate).
    """
    if num_threads is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _progress_bar(enabled, total: int, desc: str):
    """tqdm bar for long runs: ``progress=None`` shows one for >= 2,000 items on a terminal."""
    if enabled is None:
        import sys

        enabled = total >= 2000 and sys.stderr.isatty()
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="item")


def map_with_policy(
    fn: Callable, items: Sequence, *, ids: Sequence | None, policy: str, name: str, stage: str = "preprocess"
) -> tuple[list, list[ItemError]]:
    """Apply ``fn`` item by item under an error policy (for per-item outputs such as transcripts).

    Returns ``(outputs, errors)``; a failed item's output is ``None`` (``"zero"``/``"skip"``: the
    caller decides what ``None`` becomes). One :class:`EncodingWarning` summarises the failures.
    """
    policy = check_on_error(policy)
    items = list(items)
    ids = list(range(len(items))) if ids is None else list(ids)
    if len(ids) != len(items):
        raise ValueError(f"ids: has {len(ids)} entries but batch has {len(items)} items")
    outputs, errors = [], []
    for i, item in enumerate(items):
        try:
            outputs.append(fn(item))
        except Exception as exc:  # noqa: BLE001 - reported per item under the policy
            err = ItemError(ids[i], i, stage, type(exc).__name__, str(exc))
            if policy == "raise":
                raise EncodingError(name, [err]) from exc
            errors.append(err)
            outputs.append(None)
    if errors:
        shown = ", ".join(repr(e.id) for e in errors[:10]) + (" ..." if len(errors) > 10 else "")
        warnings.warn(
            f"{name}: {len(errors)} of {len(items)} items failed (ids {shown})", EncodingWarning, stacklevel=3
        )
    return outputs, errors


class Encoder(ABC):
    """Base class: batching, cache lookup, error policy and progress around a model's forward pass.

    Subclasses implement :meth:`_content_hash` (bytes identifying an item's content; for files it
    reads them), :meth:`_prepare` (preprocess one item; raise on bad input) and :meth:`_embed`
    (a list of prepared items -> float32 array), plus ``dim``/``name`` and :meth:`settings`.
    """

    #: Items prepared and embedded per chunk. Bounds the memory of decoded images/audio; the text
    #: encoder overrides it to sort a whole chunk by length before batching.
    chunk_size: int = 256

    name: str = "encoder"
    #: The mmrec_fast extra that installs this encoder's libraries (named when one is missing).
    extra: str = "text"
    batch_size: int = 32
    num_threads: int | None = None
    progress: bool | None = None
    on_error: str = "raise"
    cache = None

    def _set_options(
        self, *, batch_size, num_threads, on_error, progress, normalize, device, preprocessor, preprocessor_type
    ) -> None:
        """Check and store the options every encoder takes (torch first: its absence names the extra)."""
        from .._optional import require

        require("torch", extra=self.extra, feature=type(self).__name__)
        self.batch_size = check_positive_int(batch_size, "batch_size")
        self.num_threads = check_positive_int(num_threads, "num_threads", allow_none=True)
        self.on_error = check_on_error(on_error)
        self.progress = progress
        self.normalize = bool(normalize)
        self.device = resolve_device(device)
        if preprocessor is not None and not isinstance(preprocessor, preprocessor_type):
            raise ValueError(
                f"preprocessor: expected a {preprocessor_type.__name__} or None, got {type(preprocessor).__name__}"
            )

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the embedding rows."""

    @abstractmethod
    def settings(self) -> dict:
        """Everything that changes the output: model identity and preprocessing settings.

        Used as the embedding cache's namespace, so changing any of them never returns stale rows.
        """

    @abstractmethod
    def _content_hash(self, item) -> bytes:
        """Bytes that identify ``item``'s content (a file's bytes, a string's UTF-8)."""

    @abstractmethod
    def _prepare(self, item):
        """Preprocess one item; raise an exception describing the problem for bad input."""

    @abstractmethod
    def _embed(self, prepared: list, advance: Callable[[int], None]) -> np.ndarray:
        """Embed prepared items (float32 ``(len(prepared), dim)``); call ``advance(k)`` as rows finish."""

    # -- public API ----------------------------------------------------------------------------
    def encode(self, batch: Sequence, *, on_error: str | None = None) -> np.ndarray:
        """Encode a batch of items.

        Parameters
        ----------
        batch : sequence
            The items (strings, file paths, bytes, arrays ... depending on the encoder).
        on_error : {"raise", "skip", "zero"}, optional
            Policy for bad items; defaults to the encoder's ``on_error``.

        Returns
        -------
        np.ndarray
            float32 ``(n, dim)`` (``"skip"``: only the good rows; use :meth:`encode_with_report`
            to learn which).
        """
        return self.encode_with_report(batch, on_error=on_error).embeddings

    def encode_with_report(
        self, batch: Sequence, *, ids: Sequence | None = None, on_error: str | None = None
    ) -> EncodeResult:
        """Encode a batch and report every item that failed.

        Parameters
        ----------
        batch : sequence
            The items.
        ids : sequence, optional
            One id per item for the report (default: positions 0..n-1).
        on_error : {"raise", "skip", "zero"}, optional
            Policy for bad items; defaults to the encoder's ``on_error``.

        Returns
        -------
        EncodeResult
        """
        policy = check_on_error(self.on_error if on_error is None else on_error)
        if isinstance(batch, (str, bytes)) or not hasattr(batch, "__len__"):
            raise ValueError(
                f"batch: expected a sequence of items, got {type(batch).__name__} (wrap a single item in a list)"
            )
        items = list(batch)
        n = len(items)
        if ids is None:
            ids = list(range(n))
        else:
            ids = list(ids)
            if len(ids) != n:
                raise ValueError(f"ids: has {len(ids)} entries but batch has {n} items")
        run = _BatchRun(self, items, ids, policy)
        run.read_keys_and_cache()
        run.encode(run.unique_misses())
        return run.result()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, dim={self.dim})"


class _BatchRun:
    """One :meth:`Encoder.encode_with_report` call: content keys and cache, duplicates, chunked
    preprocessing and embedding, and the per-item error report under the call's policy."""

    def __init__(self, encoder: Encoder, items: list, ids: list, policy: str):
        self.encoder, self.items, self.ids, self.policy = encoder, items, ids, policy
        n = len(items)
        self.out = np.zeros((n, encoder.dim), dtype=np.float32)
        self.ok = np.zeros(n, dtype=bool)
        self.errors: list[ItemError] = []
        self.keys: list[str | None] = [None] * n
        self.hits = 0
        self.dups: dict[int, list[int]] = {}  # first item of some content -> later items with it

    def fail(self, i: int, stage: str, exc: BaseException) -> None:
        err = ItemError(self.ids[i], i, stage, type(exc).__name__, str(exc))
        if self.policy == "raise":
            raise EncodingError(self.encoder.name, [err]) from exc
        self.errors.append(err)

    def fail_all(self, i: int, stage: str, exc: BaseException) -> None:
        """Item ``i`` failed: so did every later item with the same content."""
        self.fail(i, stage, exc)
        for j in self.dups[i]:
            note = f"{exc} (same content as item {self.ids[i]!r})"
            self.errors.append(ItemError(self.ids[j], j, stage, type(exc).__name__, note))

    def read_keys_and_cache(self) -> None:
        """Stage 1: content keys (always: they also deduplicate the batch), then the cache."""
        for i, item in enumerate(self.items):
            try:
                self.keys[i] = hashlib.sha256(self.encoder._content_hash(item)).hexdigest()
            except Exception as exc:  # noqa: BLE001 - reported per item under the policy
                self.fail(i, "read", exc)
        cache = self.encoder.cache
        if cache is not None:
            valid = [i for i in range(len(self.items)) if self.keys[i] is not None]
            found = cache.get_many([self.keys[i] for i in valid])
            for i, vec in zip(valid, found):
                if vec is not None:
                    self.out[i] = vec
                    self.ok[i] = True
                    self.hits += 1

    def unique_misses(self) -> list[int]:
        """Items still to encode, one per distinct content (a placeholder image used by many items, a
        repeated title is encoded once; its row is copied to the duplicates)."""
        first: dict[str, int] = {}
        todo = []
        for i, key in enumerate(self.keys):
            if self.ok[i] or key is None:
                continue
            if key in first:
                self.dups[first[key]].append(i)
                continue
            first[key] = i
            self.dups[i] = []
            todo.append(i)
        return todo

    def encode(self, todo: list[int]) -> None:
        """Stages 2 and 3 chunk by chunk: bounded memory for decoded media; each finished chunk is
        written to the cache so an interrupted long run keeps its progress."""
        enc = self.encoder
        bar = _progress_bar(enc.progress, len(todo), enc.name)
        advance = bar.update if bar is not None else (lambda k: None)
        try:
            with torch_threads(enc.num_threads):
                for start in range(0, len(todo), enc.chunk_size):
                    self._encode_chunk(todo[start : start + enc.chunk_size], advance)
        finally:
            if bar is not None:
                bar.close()

    def _encode_chunk(self, chunk: list[int], advance) -> None:
        enc = self.encoder
        good, prepared = [], []
        for i in chunk:
            try:
                prepared.append(enc._prepare(self.items[i]))
                good.append(i)
            except Exception as exc:  # noqa: BLE001 - reported per item under the policy
                self.fail_all(i, "preprocess", exc)
                advance(1)
        if not good:
            return
        vecs = np.asarray(enc._embed(prepared, advance), dtype=np.float32)
        if vecs.shape != (len(good), enc.dim):  # pragma: no cover - subclass bug guard
            raise RuntimeError(f"{enc.name}: embed returned shape {vecs.shape}, expected {(len(good), enc.dim)}")
        self.out[good] = vecs
        self.ok[good] = True
        for row, i in enumerate(good):
            for j in self.dups[i]:
                self.out[j] = vecs[row]
                self.ok[j] = True
        if enc.cache is not None:
            enc.cache.put_many([self.keys[i] for i in good], vecs)

    def result(self) -> EncodeResult:
        """The rows (all, or the good ones under "skip"), their ids, and the sorted error report."""
        n = len(self.items)
        self.errors.sort(key=lambda e: e.index)
        if self.errors:
            shown = ", ".join(repr(e.id) for e in self.errors[:10]) + (" ..." if len(self.errors) > 10 else "")
            warnings.warn(
                f"{self.encoder.name}: {len(self.errors)} of {n} items failed and were "
                f"{'skipped' if self.policy == 'skip' else 'encoded as zero rows'} "
                f"(ids {shown}); see encode_with_report(...).errors",
                EncodingWarning,
                stacklevel=4,
            )
        if self.policy == "skip":
            kept = [self.ids[i] for i in range(n) if self.ok[i]]
            return EncodeResult(self.out[self.ok], kept, self.ok, self.errors, self.hits)
        return EncodeResult(self.out, self.ids, self.ok, self.errors, self.hits)
