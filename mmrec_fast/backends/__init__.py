"""Backend registry: the one place that knows which engines exist and which of them work here.

Each backend module is imported lazily, once; an import failure is recorded with its reason and never
raised from ``import mmrec_fast``. ``backend="auto"`` resolves to the best available engine (native C++
> Numba > NumPy), unless the environment variable ``MMREC_FAST_BACKEND`` names one.
"""

from __future__ import annotations

import importlib
import os
import warnings
from dataclasses import dataclass

from .base import Backend, BlockConfig

__all__ = ["BackendStatus", "BlockConfig", "available_backends", "get_backend", "BACKEND_NAMES",
           "ENV_VAR"]

ENV_VAR = "MMREC_FAST_BACKEND"
# Preference order for "auto": fastest first.
BACKEND_NAMES = ("native", "numba", "numpy")
_MODULES = {
    "native": "mmrec_fast.backends.native_backend",
    "numba": "mmrec_fast.backends.numba_backend",
    "numpy": "mmrec_fast.backends.numpy_backend",
}
_loaded: dict[str, object] = {}
_failures: dict[str, str] = {}
_warned = False


@dataclass(frozen=True)
class BackendStatus:
    """Whether a backend can run here, and what it is (or why it cannot)."""

    name: str
    available: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name:7s} {'yes' if self.available else 'no '}  {self.detail}"


def _load(name: str):
    if name in _loaded:
        return _loaded[name]
    if name in _failures:
        return None
    try:
        module = importlib.import_module(_MODULES[name])
        _loaded[name] = module
        return module
    except Exception as exc:  # ImportError, a broken .so, a numba/llvmlite mismatch...
        _failures[name] = f"{type(exc).__name__}: {exc}"
        return None


def available_backends() -> dict[str, BackendStatus]:
    """What engines this installation can run, and for those it cannot, why.

    Returns
    -------
    dict of str to BackendStatus
        In preference order (the first available one is what ``backend="auto"`` uses).

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
            result[name] = BackendStatus(name, False, _failures[name])
        else:
            try:
                detail = module.describe()
            except Exception as exc:  # a description must never break the listing
                detail = f"(no description: {exc})"
            result[name] = BackendStatus(name, True, detail)
    return result


def get_backend(name: str = "auto") -> Backend:
    """The backend object for ``name`` ("auto", "native", "numba" or "numpy").

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
        for candidate in BACKEND_NAMES:
            module = _load(candidate)
            if module is not None:
                _warn_fallback(candidate)
                return module.BACKEND
        raise RuntimeError("no backend available")  # unreachable: numpy always imports
    return _require(name, source="backend")


def _require(name: str, source: str) -> Backend:
    if name not in _MODULES:
        raise ValueError(f"{source}: unknown backend {name!r}; choose from 'auto', "
                         + ", ".join(repr(n) for n in BACKEND_NAMES))
    module = _load(name)
    if module is None:
        raise ValueError(f"{source}: backend {name!r} is not available here ({_failures[name]})")
    return module.BACKEND


def _warn_fallback(chosen: str) -> None:
    """One clear warning, once per process, when "auto" could not use the preferred engine."""
    global _warned
    skipped = [n for n in BACKEND_NAMES[:BACKEND_NAMES.index(chosen)] if n in _failures]
    if skipped and not _warned:
        _warned = True
        reasons = "; ".join(f"{n}: {_failures[n]}" for n in skipped)
        warnings.warn(f"mmrec_fast: using the {chosen!r} backend because {reasons}. "
                      "Run mmrec_fast.available_backends() for details.", RuntimeWarning, stacklevel=4)
