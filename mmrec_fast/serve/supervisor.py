"""Worker supervision: the parent holds the listening socket and restarts the worker process if it dies.

uvicorn's own supervisor (``--workers N``) restarts dead workers only when N > 1; with one worker uvicorn
runs in-process, unsupervised. Here the parent binds the socket once and hands it to each worker
(``pass_fds``), so while a replacement starts, new connections wait in the kernel's listen backlog
instead of being refused: only requests in flight on the dead worker fail.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict

from .app import ServeConfig

__all__ = ["bind_socket", "supervise", "worker_command"]

logger = logging.getLogger(__name__)

# Restart backoff: a worker that dies right after starting (bad model, broken install) is retried with
# growing pauses instead of a tight loop; one that ran a while restarts at once.
_MIN_BACKOFF, _MAX_BACKOFF, _STABLE_S = 0.0, 10.0, 5.0


def bind_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv6 when ``host`` contains ':')."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this (Linux): a response's header and body writes then go out at once
    # instead of waiting on the client's delayed ACK (~40 ms per request with uvicorn's h11 + asyncio).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def worker_command(fd: int, config: ServeConfig, log_level: str) -> list[str]:
    """The command line of one worker serving on the inherited socket ``fd``."""
    payload = asdict(config)
    payload.pop("admin_token")  # secrets travel through the environment, never the command line
    return [sys.executable, "-m", "mmrec_fast.serve.worker", str(fd), json.dumps(payload), log_level]


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def supervise(config: ServeConfig, host: str, port: int, *, log_level: str = "info", on_start=None) -> int:
    """Run one supervised worker until SIGINT/SIGTERM; returns the exit code.

    Parameters
    ----------
    config : ServeConfig
        Passed to each worker (the admin token through the environment).
    host, port : str, int
        Where to listen (port 0: a free port, reported through ``on_start`` and the log).
    log_level : str
        uvicorn log level of the worker.
    on_start : callable, optional
        ``on_start(port, pid)`` each time a worker starts.
    """
    sock = bind_socket(host, port)
    port = sock.getsockname()[1]
    env = dict(os.environ)
    env.pop("MMREC_FAST_ADMIN_TOKEN", None)
    if config.admin_token:
        env["MMREC_FAST_ADMIN_TOKEN"] = config.admin_token
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    backoff, proc = _MIN_BACKOFF, None
    try:
        while not stopping:
            started = time.monotonic()
            proc = subprocess.Popen(
                worker_command(sock.fileno(), config, log_level),
                pass_fds=(sock.fileno(),),
                env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )
            logger.info("worker %d serving http://%s:%d", proc.pid, host, port)
            print(f"mmrec-fast serve: worker {proc.pid} on http://{host}:{port}", file=sys.stderr, flush=True)
            if on_start is not None:
                on_start(port, proc.pid)
            while proc.poll() is None and not stopping:
                time.sleep(0.05)
            if stopping:
                break
            lived = time.monotonic() - started
            backoff = _MIN_BACKOFF if lived > _STABLE_S else min(_MAX_BACKOFF, max(0.5, 2 * backoff))
            print(
                f"mmrec-fast serve: worker {proc.pid} exited with {proc.returncode} after {lived:.1f} s; "
                f"restarting in {backoff:.1f} s",
                file=sys.stderr,
                flush=True,
            )
            deadline = time.monotonic() + backoff
            while time.monotonic() < deadline and not stopping:
                time.sleep(0.05)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        sock.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 0
