"""CuPy backend: CuPy arrays end to end through the same fused kernel as the ``cuda`` backend.

There is one kernel source (``csrc/cuda/topk_kernel.cu``); this backend drives it through the compiled
extension with CuPy's device pointers and CuPy's current stream. Items of any family are moved into
CuPy (DLPack for CUDA tensors, one upload for host arrays); users are too, so the kernel always runs on
CuPy memory. Results come back in the family of the caller's ``users`` (CuPy in, CuPy out).

Importing this module fails, with the reason recorded by the registry, when CuPy is not installed or
the ``cuda`` backend itself is unavailable (no extension, no device).
"""

from __future__ import annotations

import cupy  # noqa: F401  (ModuleNotFoundError here is the registry's "cupy not installed")

from .. import _arrays
from .base import BlockConfig
from .cuda_backend import CudaBackend, PreparedItems

__all__ = ["BACKEND", "CupyBackend", "describe"]


class CupyBackend(CudaBackend):
    """The fused CUDA kernel on CuPy memory and CuPy's current stream."""

    name = "cupy"

    def prepare_items(self, items, config: BlockConfig, *, persistent: bool = True) -> PreparedItems:
        return super().prepare_items(_arrays.to_family(items, "cupy"), config, persistent=persistent)

    def adopt_users(self, users, prepared: PreparedItems):
        if _arrays.family(users) == "cupy":
            return super().adopt_users(users, prepared)
        with cupy.cuda.Device(prepared.device):
            return _arrays.to_family(users, "cupy")


def describe() -> str:
    """One line for :func:`mmrec_fast.available_backends`."""
    from .cuda_backend import describe as cuda_describe

    return f"cupy {cupy.__version__} arrays through the " + cuda_describe()


BACKEND = CupyBackend()
