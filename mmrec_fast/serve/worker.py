"""One server process: ``python -m mmrec_fast.serve.worker FD CONFIG_JSON LOG_LEVEL`` (started by the supervisor).

Serves the app with uvicorn on the inherited listening socket ``FD``; the admin token comes from the
environment (never the command line, which other local users can read).
"""

from __future__ import annotations

import json
import os
import socket
import sys

__all__ = ["run_worker", "serve_on"]


def serve_on(sock: socket.socket, config, log_level: str = "info") -> None:
    """Serve ``config``'s app on a bound, listening socket until SIGINT/SIGTERM."""
    import uvicorn

    from .app import create_app

    app = create_app(config)
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=log_level,
            timeout_keep_alive=30,
            access_log=False,
            timeout_graceful_shutdown=10,
            http=config.http,
            loop=config.loop,
        )
    )
    server.run(sockets=[sock])


def run_worker(argv: list[str]) -> int:
    """Entry point of a worker process; returns its exit code."""
    from .app import ADMIN_TOKEN_ENV, ServeConfig

    fd, payload, log_level = int(argv[0]), json.loads(argv[1]), argv[2]
    config = ServeConfig(**payload, admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None)
    serve_on(socket.socket(fileno=fd), config, log_level)
    return 0


if __name__ == "__main__":
    sys.exit(run_worker(sys.argv[1:]))
