"""The ``mmrec-fast serve`` subcommand: its flags and what it runs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["add_serve_parser", "cmd_serve"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer port, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be within 0..65535, got {value}")
    return value


def _wait_ms(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected milliseconds, got {text!r}") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be within 0..100 ms, got {text}")
    return value


def add_serve_parser(sub, positive_int, positive_float) -> argparse.ArgumentParser:
    """Register ``serve`` on the CLI's subparsers (``positive_int`` / ``positive_float``: the CLI's flag types)."""
    p = sub.add_parser(
        "serve",
        help="serve a saved model over HTTP (needs the [serve] extra)",
        description="HTTP API: POST /recommend, POST /similar, GET /healthz /readyz /metrics, OpenAPI at "
        "/docs; concurrent requests are micro-batched into one engine call. Admin endpoints "
        "(/admin/reload, /admin/items) need MMREC_FAST_ADMIN_TOKEN in the environment. See docs/serving.md.",
    )
    p.add_argument("--model", required=True, help="saved model directory (mmrec-fast train --out)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="port (default 8000; 0: any free port)")
    p.add_argument(
        "--workers",
        type=int,
        choices=(0, 1),
        default=1,
        help="1 (default): one worker process, restarted by a supervisor if it dies; 0: serve in this process",
    )
    p.add_argument("--no-batching", dest="batching", action="store_false", help="one engine call per request")
    p.add_argument("--max-batch", type=positive_int, default=64, help="largest engine batch (default 64)")
    p.add_argument("--max-wait-ms", type=_wait_ms, default=2.0, help="batch gathering wait (default 2 ms)")
    p.add_argument("--max-k", type=positive_int, default=1000, help="largest k a request may ask (default 1000)")
    p.add_argument("--max-body-bytes", type=positive_int, default=1 << 20, help="request body limit (default 1 MiB)")
    p.add_argument("--request-timeout", type=positive_float, default=10.0, help="seconds before 504 (default 10)")
    p.add_argument(
        "--http",
        choices=("auto", "h11", "httptools"),
        default="auto",
        help="HTTP parser (auto: httptools if installed)",
    )
    p.add_argument(
        "--loop", choices=("auto", "asyncio", "uvloop"), default="auto", help="event loop (auto: uvloop if installed)"
    )
    p.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"))
    return p


def cmd_serve(args) -> int:
    """Run the server until interrupted (exit code 0)."""
    from ..models.io import saved_model_files

    model = Path(args.model)
    if not model.is_dir() or saved_model_files(model) is None:
        raise ValueError(f"--model: {str(model)!r} is not a saved model directory")
    from . import require_serve

    require_serve()
    from .app import ADMIN_TOKEN_ENV, ServeConfig

    config = ServeConfig(
        model_dir=str(model.resolve()),
        batching=args.batching,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_k=args.max_k,
        max_body_bytes=args.max_body_bytes,
        request_timeout_s=args.request_timeout,
        http=args.http,
        loop=args.loop,
        admin_token=os.environ.get(ADMIN_TOKEN_ENV) or None,
    )
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"mmrec-fast serve: warning: listening on {args.host}, reachable from other machines", file=sys.stderr)
    if config.admin_token is None:
        print(f"mmrec-fast serve: admin endpoints disabled ({ADMIN_TOKEN_ENV} is not set)", file=sys.stderr)
    if args.workers == 1:
        from .supervisor import supervise

        return supervise(config, args.host, args.port, log_level=args.log_level)
    from .supervisor import bind_socket
    from .worker import serve_on

    sock = bind_socket(args.host, args.port)
    print(f"mmrec-fast serve: http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr, flush=True)
    serve_on(sock, config, args.log_level)
    return 0
