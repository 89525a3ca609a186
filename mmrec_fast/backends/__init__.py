"""Backend registry: the one place that knows which engines exist and which of them work here.

Each backend module is imported lazily, once; an import failure is recorded with its reason and never
raised from ``import mmrec_fast``. An *interrupted* import (Ctrl-C while torch or numba loads) is not a
failure: it is re-raised, nothing is remembered, and the next call tries again from a clean slate.
``backend="auto"`` resolves, unless the environment variable
``MMREC_FAST_BACKEND`` names a backend:

* inputs already on a GPU (CUDA torch tensors, CuPy arrays): the fused ``cuda`` kernel, else ``cupy``
  (CuPy inputs) or ``torch`` (torch inputs), else a CPU engine after one copy to the host;
* host inputs of a large problem (at least :data:`GPU_AUTO_MACS` multiply-adds) when the ``cuda``
  backend is available: the GPU;
* otherwise the best CPU engine: native C++ > Numba > NumPy.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any

from .base import Backend, BlockConfig

__all__ = [
    "BackendStatus",
    "BlockConfig",
    "available_backends",
    "get_backend",
    "BACKEND_NAMES",
    "CPU_BACKENDS",
    "GPU_BACKENDS",
    "ENV_VAR",
    "GPU_AUTO_MACS",
]

ENV_VAR = "MMREC_FAST_BACKEND"
# CPU engines in "auto"'s preference order (fastest first), then the array backends.
CPU_BACKENDS = ("native", "numba", "numpy")
GPU_BACKENDS = ("cuda", "cupy", "torch")
BACKEND_NAMES = CPU_BACKENDS + GPU_BACKENDS
# "auto" sends host inputs to the GPU from this many multiply-adds (U x I x d) on: ~1 s of a many-core
# CPU, while the host-to-device copy of the inputs stays small beside the work.
GPU_AUTO_MACS = 100_000_000_000
_MODULES = {
    "native": "mmrec_fast.backends.native_backend",
    "numba": "mmrec_fast.backends.numba_backend",
    "numpy": "mmrec_fast.backends.numpy_backend",
    "cuda": "mmrec_fast.backends.cuda_backend",
    "cupy": "mmrec_fast.backends.cupy_backend",
    "torch": "mmrec_fast.backends.torch_backend",
}
# Missing optional packages, said plainly (with what to install) instead of a bare ModuleNotFoundError.
_MISSING_PACKAGE = {
    "cupy": 'cupy not installed (pip install "mmrec_fast[gpu-cu12]" or "mmrec_fast[gpu-cu13]")',
    "torch": 'torch not installed (pip install "mmrec_fast[models]")',
    "numba": "numba not installed (pip install numba)",
}
_loaded: dict[str, Any] = {}
_failures: dict[str, str] = {}  # memoised: a real absence, never retried
_interrupted_once: set[str] = set()  # backends whose import was interrupted (Ctrl-C) at least once
_last_error: dict[str, str] = {}  # failures after an interruption: reported, not memoised
_warned = False


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and what it is (or why it cannot)."""

    name: str
    available: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name:7s} {'yes' if self.available else 'no '}  {self.detail}"


def _interrupted(exc: BaseException) -> bool:
    """Whether an import failure is really a Ctrl-C (some libraries re-raise it as ImportError)."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _load(name: str):
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    before = set(sys.modules)
    try:
        module = importlib.import_module(_MODULES[name])
        _loaded[name] = module
        _last_error.pop(name, None)
        return module
    except BaseException as exc:
        if not isinstance(exc, Exception) or _interrupted(exc):
            # Ctrl-C (or SystemExit) during a first `import torch` says nothing about whether torch
            # works: remember nothing, and drop the Python modules this attempt added (they may hold
            # the half-built package) so the next call imports them afresh. Extension modules stay:
            # CPython cannot initialise most of them twice.
            _interrupted_once.add(name)
            for mod in set(sys.modules) - before:
                loader = getattr(getattr(sys.modules.get(mod), "__spec__", None), "loader", None)
                if not isinstance(loader, importlib.machinery.ExtensionFileLoader):
                    sys.modules.pop(mod, None)
            if isinstance(exc, Exception):
                raise KeyboardInterrupt from exc
            raise
        if isinstance(exc, ModuleNotFoundError):
            top = (exc.name or "").split(".")[0]
            reason = _MISSING_PACKAGE.get(top, f"{type(exc).__name__}: {exc}")
        else:  # ImportError, a broken .so, no CUDA device, a numba/llvmlite mismatch...
            reason = f"{type(exc).__name__}: {exc}"
        if name in _interrupted_once:
            # The failure may be the interruption's debris, not a real absence: report it but do
            # not memoise it (each call tries again).
            _last_error[name] = (
                f"{reason} (after an interrupted import earlier in this process; restart Python if it persists)"
            )
            return None
        _failures[name] = reason
        return None


def _reason(name: str) -> str:
    return _failures.get(name) or _last_error.get(name, "not loaded")


def available_backends() -> dict[str, BackendStatus]:
    """What engines this installation can run, and for those it cannot, why.

    Returns
    -------
    dict of str to BackendStatus
        CPU engines in preference order (the first available one is what ``backend="auto"`` uses for
        host data), then the array backends "cuda", "cupy" and "torch".

    Examples
    --------
    >>> import mmrec_fast as mf
    >>> status = mf.available_backends()
    >>> status["numpy"].available
    True
    """
    result = {}
    for name in BACKEND_NAMES:
        module = _load(name)
        if module is None:
            result[name] = BackendStatus(name, False, _reason(name))
        else:
            try:
                detail = module.describe()
            except Exception as exc:  # a description must never break the listing
                detail = f"(no description: {exc})"
            result[name] = BackendStatus(name, True, detail)
    return result


def get_backend(name: str = "auto", *, arrays=(), macs: int | None = None) -> Backend:
    """The backend object for ``name`` ("auto" or one of :data:`BACKEND_NAMES`).

    Parameters
    ----------
    name : str
        A backend name, or "auto".
    arrays : sequence, optional
        The call's input arrays: "auto" keeps GPU-resident ones on the GPU.
    macs : int, optional
        The call's multiply-adds (U x I x d): "auto" sends large host problems to the GPU.

    Raises
    ------
    ValueError
        Unknown name, or a named backend that is not available here (with the reason).
    """
    if not isinstance(name, str):
        raise ValueError(f"backend: expected a name, got {name!r}")
    if name == "auto":
        override = os.environ.get(ENV_VAR, "").strip()
        if override and override != "auto":
            return _require(override, source=f"environment variable {ENV_VAR}")
        from .. import _arrays

        on_device = [a for a in arrays if _arrays.is_device(a)]
        if on_device:
            family = _arrays.family(on_device[0])
            for candidate in ("cuda", family):
                if _load(candidate) is not None:
                    return _loaded[candidate].BACKEND
        elif macs is not None and macs >= GPU_AUTO_MACS and _load("cuda") is not None:
            return _loaded["cuda"].BACKEND
        for candidate in CPU_BACKENDS:
            module = _load(candidate)
            if module is not None:
                _warn_fallback(candidate)
                return module.BACKEND
        raise RuntimeError("no backend available")  # unreachable: numpy always imports
    return _require(name, source="backend")


def _require(name: str, source: str) -> Backend:
    if name not in _MODULES:
        raise ValueError(
            f"{source}: unknown backend {name!r}; choose from 'auto', " + ", ".join(repr(n) for n in BACKEND_NAMES)
        )
    module = _load(name)
    if module is None:
        raise ValueError(f"{source}: backend {name!r} is not available here ({_reason(name)})")
    return module.BACKEND


def _warn_fallback(chosen: str) -> None:
    """One clear warning, once per process, when "auto" could not use the preferred engine."""
    global _warned
    skipped = [n for n in CPU_BACKENDS[: CPU_BACKENDS.index(chosen)] if n in _failures or n in _last_error]
    if skipped and not _warned:
        _warned = True
        reasons = "; ".join(f"{n}: {_reason(n)}" for n in skipped)
        warnings.warn(
            f"mmrec_fast: using the {chosen!r} backend because {reasons}. "
            "Run mmrec_fast.available_backends() for details.",
            RuntimeWarning,
            stacklevel=4,
        )
