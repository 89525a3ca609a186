"""Optional dependencies: import one, or say which extra installs it.

The core install (``pip install mmrec_fast``) brings NumPy, SciPy, Numba and tqdm: the engine and
nothing else. Every other feature lives behind an extra, and reaching one that is not installed
raises :class:`MissingDependencyError` (an ``ImportError``) naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["MissingDependencyError", "require", "EXTRAS"]

#: What each extra is for (used in messages and kept in step with pyproject.toml).
EXTRAS = {
    "models": "trained models (BPR-MF, hybrid; torch) and iALS's content map (scikit-learn)",
    "text": "the MiniLM text encoder (torch, transformers, the packaged weights)",
    "encoders": "image and audio encoders (timm, faster-whisper, Pillow, soundfile)",
    "data": "interaction logs, id maps and splits (pandas, pyarrow, PyYAML)",
    "plots": "PNG charts (matplotlib)",
    "serve": "the HTTP service",
    "ray": "the distributed engine (Ray)",
    "gpu-cu12": "the CuPy backend (CUDA 12)",
    "gpu-cu13": "the CuPy backend (CUDA 13)",
    "demo": "the MovieLens demo (models, text, data, plots)",
}


class MissingDependencyError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def require(module: str, *, extra: str, feature: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    Parameters
    ----------
    module : str
        Import name (``"torch"``, ``"pandas"``, ``"matplotlib.figure"``).
    extra : str
        The extra of ``mmrec_fast`` that installs it (a key of :data:`EXTRAS`).
    feature : str, optional
        What needs it, for the message (default: the extra's description).

    Returns
    -------
    module
        The imported module.

    Raises
    ------
    MissingDependencyError
        ``module`` (or one of its own dependencies) cannot be imported.
    ValueError
        ``extra`` is not an extra of this package.
    """
    if extra not in EXTRAS:
        raise ValueError(f"extra: unknown extra {extra!r}; expected one of {sorted(EXTRAS)}")
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        what = feature or EXTRAS[extra]
        raise MissingDependencyError(
            f'{what} needs {module.split(".")[0]!r}, which is not installed: pip install "mmrec_fast[{extra}]" ({exc})'
        ) from exc
