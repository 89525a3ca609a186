"""Ray, imported lazily: ``import mmrec_fast`` (and ``import mmrec_fast.distributed``) never imports it."""

from __future__ import annotations

import importlib

__all__ = ["require_ray", "retryable_errors"]

INSTALL_HINT = 'the distributed engine needs Ray: pip install "mmrec_fast[ray]" (or "ray[data]>=2.9" pyarrow)'


def require_ray():
    """The ``ray`` module, or an ImportError that says how to install it."""
    try:
        return importlib.import_module("ray")
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc


def retryable_errors() -> tuple[type[BaseException], ...]:
    """Failures of the *infrastructure* (a worker, its node or an object lost), never of our code.

    A batch that fails with one of these is resubmitted; an exception raised by the engine itself
    (``RayTaskError`` wrapping e.g. a ValueError) is a bug or bad input and is re-raised at once.
    """
    ex = require_ray().exceptions
    names = (
        "RayActorError",
        "WorkerCrashedError",
        "ObjectLostError",
        "NodeDiedError",
        "OutOfMemoryError",
        "LocalRayletDiedError",
    )
    return tuple(getattr(ex, name) for name in names if hasattr(ex, name))
