"""``mmrec-fast serve``: an HTTP recommendation service (FastAPI + uvicorn, the ``[serve]`` extra).

See ``docs/serving.md``. Importing this package is free; its exports (``create_app``, ``ServeConfig``,
``load_snapshot``) need fastapi, uvicorn and prometheus-client and raise ImportError naming the
``[serve]`` extra when they are missing, so the CLI can register ``serve`` without them.
"""

from __future__ import annotations

__all__ = ["ADMIN_TOKEN_ENV", "ServeConfig", "Snapshot", "create_app", "load_snapshot", "require_serve"]


def require_serve() -> None:
    """Raise :class:`~mmrec_fast._optional.MissingDependencyError` unless the [serve] packages import."""
    from .._optional import require

    for module in ("fastapi", "uvicorn", "prometheus_client"):
        require(module, extra="serve", feature="mmrec_fast.serve")


def __getattr__(name: str):
    if name in ("ADMIN_TOKEN_ENV", "ServeConfig", "create_app"):
        require_serve()
        from . import app

        return getattr(app, name)
    if name in ("Snapshot", "load_snapshot"):
        from . import snapshot

        return getattr(snapshot, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
