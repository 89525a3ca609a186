"""Ray, imported lazily: ``import mmrec_fast`` (and ``import mmrec_fast.distributed``) never imports it."""

from __future__ import annotations

from .._optional import require

__all__ = ["require_ray", "retryable_errors"]


def require_ray():
    """The ``ray`` module, or an ImportError that names the ``[ray]`` extra."""
    return require("ray", extra="ray", feature="the distributed engine")


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
