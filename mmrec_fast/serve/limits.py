"""ASGI middleware: request body size and read-time limits, and per-route request metrics.

The body is read here in full (bounded by ``max_body_bytes`` and ``body_timeout_s``) and replayed to
the app, so an oversized or trickled body is refused with 413 / 408 before any parsing, whether or not
the client sent a Content-Length.
"""

from __future__ import annotations

import asyncio
import json
import time

__all__ = ["LimitsMiddleware", "InFlight"]

# Routes whose requests go through the micro-batcher (counted in ``LimitsMiddleware.scoring``).
_SCORING = frozenset({"/recommend", "/similar"})
_ROUTES = frozenset(
    {"/recommend", "/similar", "/healthz", "/readyz", "/metrics", "/admin/reload", "/admin/items", "/docs"}
)


class InFlight:
    """Scoring requests the server is handling now (shared by the middleware and the batcher)."""

    def __init__(self):
        self.scoring = 0


class _Refused(Exception):
    def __init__(self, status: int, message: str):
        self.status, self.message = status, message


async def _send_json(send, status: int, message: str, field: str | None) -> None:
    body = json.dumps({"error": message, "field": field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    """Body limits and metrics around an ASGI app.

    Parameters
    ----------
    app : ASGI app
    max_body_bytes : int
        Larger bodies get 413.
    body_timeout_s : float
        Bodies not fully received within this many seconds get 408.
    metrics : ServeMetrics
        Where request counts and latencies go.
    inflight : InFlight
        Counts scoring requests in progress (the batcher waits only for ones not yet queued).
    """

    def __init__(self, app, *, max_body_bytes: int, body_timeout_s: float, metrics, inflight: InFlight):
        self.app, self.max_body_bytes, self.body_timeout_s, self.metrics = app, max_body_bytes, body_timeout_s, metrics
        self.inflight = inflight

    async def _read_body(self, receive) -> list[dict]:
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            size += len(message.get("body", b""))
            if size > self.max_body_bytes:
                raise _Refused(413, f"body: larger than {self.max_body_bytes} bytes")
            if not message.get("more_body", False):
                return messages

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        route = scope["path"] if scope["path"] in _ROUTES else "other"
        scoring = route in _SCORING
        self.inflight.scoring += scoring
        status = [500]

        async def send_status(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            declared = dict(scope.get("headers", [])).get(b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_body_bytes):
                raise _Refused(413, f"body: larger than {self.max_body_bytes} bytes")
            if scope["method"] in ("POST", "PUT", "PATCH"):
                try:
                    messages = await asyncio.wait_for(self._read_body(receive), self.body_timeout_s)
                except asyncio.TimeoutError:
                    raise _Refused(408, f"body: not received within {self.body_timeout_s:g} s") from None
                pending = list(messages)

                async def replay():
                    return pending.pop(0) if pending else await receive()

                await self.app(scope, replay, send_status)
            else:
                await self.app(scope, receive, send_status)
        except _Refused as refused:
            status[0] = refused.status
            await _send_json(send, refused.status, refused.message, "body")
        finally:
            self.inflight.scoring -= scoring
            self.metrics.requests.labels(route, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
