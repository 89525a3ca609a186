"""CUDA backend: the fused top-k + logsumexp kernel of ``csrc/cuda/topk_kernel.cu`` (``mmrec_fast._cuda``).

Inputs may be NumPy arrays, torch tensors (CPU or CUDA) or CuPy arrays. Device-resident inputs are
used in place -- their raw device pointers go to the kernel, which runs on the caller's current stream
(torch's or CuPy's), and the results are tensors/arrays of the same family on the same device, with no
synchronisation forced. Host inputs are copied to the device by the extension (items once per
:class:`~mmrec_fast.ItemIndex`), and results are copied back.

float16 / bfloat16 device inputs keep their type (``half_inputs``): when users and items share it, the
score tiles come from tensor cores (WMMA, exact 16-bit products, float32 accumulation); otherwise
everything runs on the float32 SIMT path.

The kernel keeps each score tile in shared memory: per tile of 64 users x 128 items it updates every
user's online (max, sum-exp), filters against the user's running k-th best key into a per-user candidate
buffer (pruned by a warp radix select when full), and a final kernel merges item shards exactly. See the
source's header comment for the algorithm. k is limited to :data:`MAX_K` (16384) by the shared-memory
sort of the final merge.

Filters run in the kernels: the engine's item mask (allow / ban, one byte per item) goes to the device as
it is -- uploaded once per (device, stream) and reused while the next call's mask has the same bytes -- and
masked items are treated like excluded ones (never listed, not in the normaliser); tiles without an
eligible item are skipped. ``normalizer=False`` skips the kernels' exp work.

A second kernel, ``csrc/cuda/topk_mma.cu`` (``_cuda.topk_mma``), computes the score tiles with ``mma.sync``
on tensor cores and filters them in registers; float32 inputs are split into bf16 planes ("bf16x6":
float32-level; "bf16x3": ~16 bits) or rounded once ("tf32", "bf16": lossy). It is opt-in through the
:func:`precision` context until ``benchmarks/gpu_check.py`` has measured it (docs/gpu.md).

Importing this module fails (and the registry records why) when the extension was not built, was
built without the kernels, or no CUDA device is visible.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from mmrec_fast import _cuda  # type: ignore[attr-defined]  # compiled extension, no stubs

from .. import _arrays
from .base import BlockConfig

__all__ = ["BACKEND", "CudaBackend", "PreparedItems", "describe", "MAX_K", "PRECISIONS", "WORKSPACE_BYTES", "precision"]

if not hasattr(_cuda, "topk"):
    raise ImportError(
        "mmrec_fast._cuda was built without the top-k kernels (stale build); "
        "rebuild with `python setup.py build_ext --inplace`"
    )
# 2: the kernels take the item mask and the normalizer flag (an older build would misread the arguments).
if getattr(_cuda, "abi_version", lambda: 1)() < 2:
    raise ImportError(
        "mmrec_fast._cuda predates in-kernel filters (stale build); rebuild with `python setup.py build_ext --inplace`"
    )
_count, _reason = _cuda.device_count()
if _count == 0:
    raise ImportError(f"no CUDA device ({_reason})")

MAX_K = _cuda.max_k()
# Candidate buffers of one launch: users x item shards x capacity x 8 bytes. 1 GiB keeps k = 8192
# (128 KiB per user and shard) at 8192 users per launch, and k = 100 at all 100k users in one launch.
WORKSPACE_BYTES = 1 << 30
# Items per tile of the kernel: the buffer must hold k plus one whole tile of new candidates.
KERNEL_ITEM_TILE = 128
# Users per engine call: the launcher batches internally by workspace, so one call per ~2e13 MACs.
CHUNK_MACS = 20_000_000_000_000
# Device copies of item masks kept for reuse: one per (device, array family, stream), the most recent few.
MASK_CACHE_ENTRIES = 8


# Element types the kernel takes: float32 on the SIMT path, float16 / bfloat16 on tensor cores.
_DTYPE_CODES = {"float32": 0, "float16": 1, "bfloat16": 2}


# ------------------------------------------------------------------------------------------------------------
# Tensor-core kernel (csrc/cuda/topk_mma.cu): opt-in through `precision(...)` until gpu_check.py has measured it.

#: Arithmetic of ``backend="cuda"`` -> code of ``_cuda.topk_mma`` for float32 inputs (``None``: the SIMT kernel,
#: and the WMMA kernel for 16-bit inputs). float16 / bfloat16 inputs under any tensor-core name run natively
#: (code 0: exact 16-bit products). "bf16x3" / "bf16x6" keep float32-level accuracy; "bf16" / "tf32" round the
#: float32 inputs once (lossy, explicit opt-in only). docs/gpu.md has the error bounds.
PRECISIONS: dict[str, int | None] = {"auto": None, "simt": None, "bf16x3": 2, "bf16x6": 3, "bf16": 1, "tf32": 4}
_PRECISION: contextvars.ContextVar[str] = contextvars.ContextVar("mmrec_fast_cuda_precision", default="auto")


@contextlib.contextmanager
def precision(name: str) -> Iterator[str]:
    """Run ``backend="cuda"`` calls inside the block on the tensor-core kernel with this arithmetic.

    Parameters
    ----------
    name : str
        One of :data:`PRECISIONS`: ``"auto"`` / ``"simt"`` (the default kernels), ``"bf16x3"`` (float32 inputs
        split into bf16 hi + lo, 3 tensor-core products: ~17 significant bits), ``"bf16x6"`` (hi + mid + lo,
        6 products: float32-level), ``"bf16"`` or ``"tf32"`` (one rounding of the float32 inputs: lossy).

    Yields
    ------
    str
        The name, once validated. The setting is per thread / task (a context variable) and restored on exit.

    Examples
    --------
    >>> from mmrec_fast.backends import cuda_backend  # doctest: +SKIP
    >>> with cuda_backend.precision("bf16x3"):  # doctest: +SKIP
    ...     result = mf.topk(users, items, 100, backend="cuda")
    """
    if not isinstance(name, str) or name not in PRECISIONS:
        raise ValueError(f"precision: expected one of {sorted(PRECISIONS)}, got {name!r}")
    token = _PRECISION.set(name)
    try:
        yield name
    finally:
        _PRECISION.reset(token)


def mma_code(dtype_name: str, name: str | None = None) -> int | None:
    """The ``precision`` code of ``_cuda.topk_mma`` for inputs of ``dtype_name``, or ``None`` for the default kernels.

    Parameters
    ----------
    dtype_name : str
        "float32", "float16" or "bfloat16": the element type both operands have when the kernel runs.
    name : str, optional
        A key of :data:`PRECISIONS`; the current :func:`precision` setting when omitted.

    Returns
    -------
    int or None
        0 for 16-bit inputs under a tensor-core name, the split's code for float32 inputs, ``None`` for "auto" /
        "simt".
    """
    name = _PRECISION.get() if name is None else name
    if name not in PRECISIONS:
        raise ValueError(f"precision: expected one of {sorted(PRECISIONS)}, got {name!r}")
    code = PRECISIONS[name]
    if code is None:
        return None
    if not hasattr(_cuda, "topk_mma"):
        raise RuntimeError(
            "precision: mmrec_fast._cuda was built without the tensor-core kernel (stale build); "
            "rebuild with `python setup.py build_ext --inplace`"
        )
    return code if dtype_name == "float32" else 0


def _launch(code: int | None, *args) -> None:
    """``_cuda.topk`` (default kernels) or ``_cuda.topk_mma`` with ``code`` inserted after ``dtype``."""
    if code is None:
        _cuda.topk(*args)
    else:
        _cuda.topk_mma(*args[:6], code, *args[6:])


# ------------------------------------------------------------------------------------------------------------


def _dtype_name(x) -> str:
    if _arrays.family(x) == "torch":
        return str(x.dtype).rsplit(".", 1)[-1]
    return np.dtype(x.dtype).name


def _as_float32(x):
    """A float32 version of a device array (the array itself when it already is)."""
    if _dtype_name(x) == "float32":
        return x
    return x.float() if _arrays.family(x) == "torch" else x.astype("float32")


@dataclass(frozen=True)
class PreparedItems:
    """Items in device memory: a pointer, its owner (kept alive), the device ordinal and element type."""

    ptr: int
    n_items: int
    dim: int
    device: int
    owner: Any  # DeviceBuffer, torch tensor or CuPy array holding the memory
    dtype: str = "float32"

    def float32_owner(self):
        """(pointer, keep-alive) of float32 items: these, or a float32 copy of 16-bit device items."""
        if self.dtype == "float32":
            return self.ptr, self.owner
        copy = _as_float32(self.owner)
        return _device_ptr(copy), copy


def _stream_of(users, device: int) -> int:
    fam = _arrays.family(users)
    if fam == "torch":
        import torch

        return int(torch.cuda.current_stream(device).cuda_stream)
    if fam == "cupy":
        import cupy

        with cupy.cuda.Device(device):
            return int(cupy.cuda.get_current_stream().ptr)
    return 0


def _synchronize_family(x, device: int) -> None:
    """Wait for the work queued on ``x``'s framework stream (before the extension's own stream uses it)."""
    if _arrays.family(x) == "torch":
        import torch

        torch.cuda.synchronize(device)
    else:
        import cupy

        with cupy.cuda.Device(device):
            cupy.cuda.get_current_stream().synchronize()


def _device_ptr(x) -> int:
    return int(x.data_ptr()) if _arrays.family(x) == "torch" else int(x.data.ptr)


class _DeviceMasks:
    """Device copies of recent item masks, one per (device, family, stream), reused while the bytes match.

    The engine builds a new mask array per call (and a caller's own boolean mask may change in place), so
    a copy is matched by content, not identity: one comparison of I bytes on the host instead of an
    allocation and a host-to-device copy. Keying by stream keeps reuse stream-ordered: a replaced copy is
    freed to its framework's allocator, which reuses it only behind the kernels already queued there.
    """

    def __init__(self, size: int):
        self._size = size
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple, tuple[np.ndarray, Any]] = OrderedDict()

    def get(self, mask: np.ndarray, key: tuple, upload: Callable[[np.ndarray], Any]):
        """The device copy of ``mask`` for ``key``: the cached one when its bytes match, else ``upload(mask)``."""
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0].shape == mask.shape and np.array_equal(hit[0], mask):
                self._entries.move_to_end(key)
                return hit[1]
        copy = mask.copy()
        device_copy = upload(copy)
        with self._lock:
            self._entries[key] = (copy, device_copy)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return device_copy

    def clear(self) -> None:
        """Drop every device copy."""
        with self._lock:
            self._entries.clear()


def _host_mask(item_mask, n_items: int) -> np.ndarray | None:
    """The engine's mask as C-contiguous uint8 of length I (``None`` stays ``None``)."""
    if item_mask is None:
        return None
    mask = np.ascontiguousarray(item_mask)
    if mask.dtype == np.bool_:
        mask = mask.view(np.uint8)
    if mask.dtype != np.uint8 or mask.shape != (n_items,):
        raise ValueError(f"item_mask: expected uint8 or bool of shape ({n_items},), got {mask.dtype} {mask.shape}")
    return mask


class CudaBackend:
    """Fused CUDA kernel on NumPy, torch or CuPy inputs (results in the family of ``users``)."""

    name = "cuda"
    array_api = True
    # float16 / bfloat16 device inputs keep their type: when users and items share it, scores come from
    # tensor cores (exact 16-bit products, float32 accumulation); mixed types run in float32.
    half_inputs = True

    def __init__(self) -> None:
        self.masks = _DeviceMasks(MASK_CACHE_ENTRIES)

    def prepare_items(self, items, config: BlockConfig, *, persistent: bool = True) -> PreparedItems:
        n_items, dim = int(items.shape[0]), int(items.shape[1])
        if _arrays.is_device(items):
            device = _arrays.device_index(items)
            assert device is not None  # a device array has an ordinal
            return PreparedItems(_device_ptr(items), n_items, dim, device, items, _dtype_name(items))
        host = np.ascontiguousarray(_arrays.asnumpy(_as_float32(items)), dtype=np.float32)
        device = self._default_device()
        buffer = _cuda.DeviceBuffer(host.nbytes, device)
        buffer.upload(host)
        return PreparedItems(buffer.ptr, n_items, dim, device, buffer)

    @staticmethod
    def _default_device() -> int:
        import sys

        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            return int(torch.cuda.current_device())
        return 0

    def adopt_users(self, users, prepared: PreparedItems):
        if _arrays.is_device(users) and _arrays.device_index(users) != prepared.device:
            raise ValueError(
                f"users: on CUDA device {_arrays.device_index(users)} but the items are on device {prepared.device}"
            )
        return users

    def chunk_users(self, n_items: int, dim: int, prepared) -> int:
        return max(1024, CHUNK_MACS // max(1, n_items * dim))

    def capacity(self, k: int, config: BlockConfig) -> int:
        """Candidate buffer slots per user and shard: the configured multiple of k, and k + one tile."""
        return max(config.buffer_capacity(k), k + KERNEL_ITEM_TILE)

    def topk_arrays(
        self,
        users,
        prepared: PreparedItems,
        k: int,
        inv_temperature: float,
        excl_indptr: np.ndarray,
        excl_indices: np.ndarray,
        config: BlockConfig,
        *,
        item_mask: np.ndarray | None = None,
        normalizer: bool = True,
    ):
        """Run the kernel; results are (indices, scores, lse) of the family and device of ``users``.

        ``item_mask`` (uint8 (I,), 0 = ineligible for every user) goes to the kernel as it is (a device
        copy cached per device and stream, see :class:`_DeviceMasks`); the kernel treats masked items like
        excluded ones and skips tiles with none eligible. ``normalizer=False`` skips the kernel's exp
        work; ``lse`` is then NaN (the engine drops it).
        """
        if not isinstance(prepared, PreparedItems):
            raise TypeError(f"cuda backend: expected PreparedItems, got {type(prepared).__name__}")
        if k > MAX_K:
            raise ValueError(
                f"k: the cuda backend supports k <= {MAX_K} (got {k}); use backend='torch' "
                "or a CPU backend for longer lists"
            )
        n_users = int(users.shape[0])
        capacity = self.capacity(k, config)
        fam = _arrays.family(users)
        mask = _host_mask(item_mask, prepared.n_items)
        normalizer = bool(normalizer)
        if _arrays.is_device(users):
            device = prepared.device
            if _dtype_name(users) == prepared.dtype:
                items_ptr, keep = prepared.ptr, prepared.owner
            else:  # mixed element types: both in float32 (a temporary copy of whichever is 16-bit)
                users = _as_float32(users)
                items_ptr, keep = prepared.float32_owner()
            dtype = _DTYPE_CODES[_dtype_name(users)]
            code = mma_code(_dtype_name(users))
            host_indptr = np.ascontiguousarray(excl_indptr, dtype=np.int64)
            host_indices = np.ascontiguousarray(excl_indices, dtype=np.int64)
            if fam == "cupy":
                import cupy

                with cupy.cuda.Device(device):
                    indptr, indices = cupy.asarray(host_indptr), cupy.asarray(host_indices)
            else:
                indptr = _arrays.to_family(host_indptr, "torch", like=users)
                indices = _arrays.to_family(host_indices, "torch", like=users)
            out_idx = _arrays.full(fam, (n_users, k), -1, "int64", like=users)
            out_scores = _arrays.full(fam, (n_users, k), float("-inf"), "float32", like=users)
            out_lse = _arrays.full(fam, (n_users,), float("-inf"), "float64", like=users)
            stream = _stream_of(users, device)
            mask_ptr = 0
            if mask is not None:
                like = users

                def upload(host):
                    if fam == "cupy":
                        import cupy

                        with cupy.cuda.Device(device):
                            return cupy.asarray(host)
                    return _arrays.to_family(host, "torch", like=like)

                device_mask = self.masks.get(mask, (device, fam, stream), upload)
                mask_ptr = _device_ptr(device_mask)
            # Stream-ordered: temporaries (CSR copies, a float32 copy) are released to their framework's
            # allocator after this call, which reuses memory only behind the kernel on the same stream.
            _launch(
                code,
                _device_ptr(users),
                n_users,
                items_ptr,
                prepared.n_items,
                prepared.dim,
                dtype,
                int(k),
                float(inv_temperature),
                _device_ptr(indptr),
                _device_ptr(indices) if indices.shape[0] else 0,
                mask_ptr,
                normalizer,
                capacity,
                WORKSPACE_BYTES,
                _device_ptr(out_idx),
                _device_ptr(out_scores),
                _device_ptr(out_lse),
                device,
                stream,
                False,
            )
            del keep
            return out_idx, out_scores, out_lse

        # Host inputs: stage through device buffers, run on the default stream, copy back.
        host_users = np.ascontiguousarray(_arrays.asnumpy(_as_float32(users)), dtype=np.float32)
        indptr = np.ascontiguousarray(excl_indptr, dtype=np.int64)
        indices = np.ascontiguousarray(excl_indices, dtype=np.int64)
        device = prepared.device
        bufs = {
            name: _cuda.DeviceBuffer(max(1, arr.nbytes), device)
            for name, arr in (("users", host_users), ("indptr", indptr), ("indices", indices))
        }
        for name, arr in (("users", host_users), ("indptr", indptr), ("indices", indices)):
            bufs[name].upload(arr)
        out_idx = np.empty((n_users, k), dtype=np.int64)
        out_scores = np.empty((n_users, k), dtype=np.float32)
        out_lse = np.empty(n_users, dtype=np.float64)
        d_idx = _cuda.DeviceBuffer(max(1, out_idx.nbytes), device)
        d_scores = _cuda.DeviceBuffer(max(1, out_scores.nbytes), device)
        d_lse = _cuda.DeviceBuffer(max(1, out_lse.nbytes), device)
        items_ptr, keep = prepared.float32_owner()  # host users are float32
        if prepared.dtype != "float32":
            _synchronize_family(keep, device)  # the float32 copy is made on its framework's stream
        device_mask = None
        if mask is not None:

            def upload(host):
                buffer = _cuda.DeviceBuffer(max(1, host.nbytes), device)
                buffer.upload(host)
                return buffer

            device_mask = self.masks.get(mask, (device, "host", 0), upload)
        _launch(
            mma_code("float32"),
            bufs["users"].ptr,
            n_users,
            items_ptr,
            prepared.n_items,
            prepared.dim,
            0,
            int(k),
            float(inv_temperature),
            bufs["indptr"].ptr,
            bufs["indices"].ptr if indices.size else 0,
            device_mask.ptr if device_mask is not None else 0,
            normalizer,
            capacity,
            WORKSPACE_BYTES,
            d_idx.ptr,
            d_scores.ptr,
            d_lse.ptr,
            device,
            0,
            True,
        )
        del keep
        d_idx.download(out_idx)
        d_scores.download(out_scores)
        d_lse.download(out_lse)
        if fam == "torch":  # CPU tensors in, CPU tensors out (zero-copy wrap)
            return tuple(_arrays.to_family(a, "torch") for a in (out_idx, out_scores, out_lse))
        return out_idx, out_scores, out_lse


def describe() -> str:
    """One line for :func:`mmrec_fast.available_backends`."""
    name, major, minor = _cuda.device_info(0)
    version = _cuda.runtime_version()
    return (
        f"cuda (fused kernel, {name}, sm_{major}{minor}, {_count} device(s), "
        f"runtime {version // 1000}.{version % 1000 // 10})"
    )


BACKEND = CudaBackend()
