"""``mmrec-fast serve``: an HTTP recommendation service (FastAPI + uvicorn, the ``[serve]`` extra).

See ``docs/serving.md``. Importing this package needs fastapi, uvicorn and prometheus-client; without
them it raises ImportError naming the extra to install.
"""

from __future__ import annotations

try:
    import fastapi  # noqa: F401
    import prometheus_client  # noqa: F401
    import uvicorn  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(f"mmrec_fast.serve needs the [serve] extra: pip install 'mmrec_fast[serve]' ({exc})") from exc

from .app import ADMIN_TOKEN_ENV, ServeConfig, create_app
from .snapshot import Snapshot, load_snapshot

__all__ = ["ADMIN_TOKEN_ENV", "ServeConfig", "Snapshot", "create_app", "load_snapshot"]
