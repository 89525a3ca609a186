"""The FastAPI application: routes, error mapping, admin (reload / item updates) and the snapshot swap."""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from .batcher import MicroBatcher
from .explain import explain_hits
from .limits import InFlight, LimitsMiddleware
from .metrics import ServeMetrics
from .schemas import AdminResponse, ItemsRequest, ListResponse, RecommendRequest, ReloadRequest, SimilarRequest
from .scoring import Query, run_batch
from .snapshot import ClientError, Snapshot, load_snapshot

__all__ = ["ServeConfig", "create_app", "ADMIN_TOKEN_ENV"]

logger = logging.getLogger(__name__)

#: Environment variable holding the admin token; admin endpoints are disabled when it is unset or empty.
ADMIN_TOKEN_ENV = "MMREC_FAST_ADMIN_TOKEN"


@dataclass
class ServeConfig:
    """Settings of one server process.

    Attributes
    ----------
    model_dir : str
        Saved model directory served at start.
    batching : bool
        Micro-batch concurrent requests into one engine call (False: one call per request).
    max_batch : int
        Largest engine batch.
    max_wait_ms : float
        Longest an idle batcher waits for company (<= 2 ms by default).
    max_k : int
        Largest list length a request may ask for.
    max_body_bytes : int
        Larger request bodies get 413.
    request_timeout_s : float
        A request still waiting for the engine after this long gets 504.
    body_timeout_s : float
        A client still sending its body after this long gets 408.
    admin_token : str or None
        Token for ``/admin/*`` (``Authorization: Bearer <token>``); None disables them.
    engine_threads : int
        Worker threads when batching is off.
    http, loop : str
        uvicorn's HTTP parser ("auto": httptools when installed, else h11) and event loop ("auto": uvloop
        when installed, else asyncio).
    """

    model_dir: str
    batching: bool = True
    max_batch: int = 64
    max_wait_ms: float = 2.0
    max_k: int = 1000
    max_body_bytes: int = 1 << 20
    request_timeout_s: float = 10.0
    body_timeout_s: float = 5.0
    admin_token: str | None = None
    engine_threads: int = 2
    http: str = "auto"
    loop: str = "auto"


class _Holder:
    """The current snapshot: one reference, swapped atomically; admin changes serialised by a lock."""

    def __init__(self):
        self.current: Snapshot | None = None
        self.lock = asyncio.Lock()


def _error(status: int, message: str, field: str | None) -> JSONResponse:
    return JSONResponse({"error": message, "field": field}, status_code=status)


# pydantic puts union members' type tags and list positions in an error's location; the field is the rest.
_TYPE_TAGS = frozenset({"int", "str", "float", "bool", "list", "dict", "none"})


def _field_of(loc) -> str:
    parts = [
        p
        for p in loc
        if isinstance(p, str) and p not in ("body", "query", "path") and p not in _TYPE_TAGS and "[" not in p
    ]
    return ".".join(parts) if parts else "body"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        first = errors[0] if errors else {"loc": ("body",), "msg": "invalid request"}
        field = _field_of(first.get("loc", ("body",)))
        if first.get("type") == "json_invalid":
            field = "body"
        return _error(422, f"{field}: {first.get('msg', 'invalid value')}", field)

    @app.exception_handler(ClientError)
    async def _client(request: Request, exc: ClientError):
        return _error(exc.status, str(exc), exc.field)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), None)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):
        logger.exception("unhandled error on %s", request.url.path)
        return _error(500, "internal server error", None)


def _rows(snap: Snapshot, values, field: str) -> np.ndarray | None:
    return None if values is None else snap.keys(values, field)


def _filters(snap: Snapshot, body) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """The request's subset (allow ∩ candidates) and the rows it bans."""
    allow, cands = _rows(snap, body.allow, "allow"), _rows(snap, body.candidates, "candidates")
    subset = allow if cands is None else (cands if allow is None else np.intersect1d(allow, cands))
    ban = _rows(snap, body.ban, "ban")
    return subset, [] if ban is None else [ban]


def _user_vector(snap: Snapshot, body: RecommendRequest) -> tuple[np.ndarray | None, int | None, np.ndarray]:
    """(known user's vector or None, user code or None, history as model item codes)."""
    history = np.empty(0, dtype=np.int64)
    if body.history is not None:
        history = np.unique(snap.model_items.positions(body.history, "history"))
    if body.user is not None:
        code = snap.users.positions([body.user], "user", missing_ok=True, status=404)[0]
        if code >= 0:
            return snap.user_vectors[code], int(code), history
        if body.history is None:
            raise ClientError("user", f"unknown user {body.user!r} (send a history to fold a new user in)", 404)
    elif body.history is None:
        raise ClientError("user", "give a known user id, or a history for a new user")
    return None, None, history


def create_app(config: ServeConfig, *, snapshot: Snapshot | None = None) -> FastAPI:
    """The HTTP application for ``config`` (the model is loaded at startup unless ``snapshot`` is given).

    Parameters
    ----------
    config : ServeConfig
        Server settings.
    snapshot : Snapshot, optional
        An already loaded snapshot to serve (tests, embedding).

    Returns
    -------
    fastapi.FastAPI
    """
    holder, metrics, inflight = _Holder(), ServeMetrics(), InFlight()
    holder.current = snapshot
    batcher = MicroBatcher(
        run_batch,
        enabled=config.batching,
        max_batch=config.max_batch,
        max_wait=config.max_wait_ms / 1000.0,
        threads=config.engine_threads,
        on_batch=metrics.observe_batch,
        arriving=lambda: inflight.scoring,
    )
    # Fold-in, explanations of large lists and admin loads: never on the event loop, never in the engine thread.
    side_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="serve-side")

    async def lifespan(app: FastAPI):
        if holder.current is None:
            holder.current = await asyncio.get_running_loop().run_in_executor(
                side_pool, load_snapshot, config.model_dir
            )
        metrics.generation.set(holder.current.generation)
        metrics.items.set(holder.current.n_items)
        batcher.start()
        yield
        await batcher.stop()
        side_pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="mmrec_fast",
        summary="Full-catalogue top-k recommendations with softmax probabilities and explanations",
        lifespan=lifespan,
    )
    app.add_middleware(
        LimitsMiddleware,
        max_body_bytes=config.max_body_bytes,
        body_timeout_s=config.body_timeout_s,
        metrics=metrics,
        inflight=inflight,
    )
    _install_error_handlers(app)
    app.state.holder, app.state.metrics, app.state.batcher = holder, metrics, batcher

    async def score(query: Query):
        try:
            return await asyncio.wait_for(batcher.submit(query), config.request_timeout_s)
        except asyncio.TimeoutError:
            metrics.timeouts.inc()
            raise ClientError("request", f"timed out after {config.request_timeout_s:g} s", 504) from None

    def check_k(k: int) -> None:
        if k > config.max_k:
            raise ClientError("k", f"at most {config.max_k}, got {k}")

    @app.post("/recommend", response_model=ListResponse, responses={404: {}, 413: {}, 422: {}, 504: {}})
    async def recommend(body: RecommendRequest):
        """Top-k for a known user, or for a new user folded in from a history."""
        snap = holder.current
        check_k(body.k)
        vector, code, history = _user_vector(snap, body)
        subset, exclude = _filters(snap, body)
        folded = vector is None
        if folded:
            history_row = sp.csr_matrix(
                (np.ones(history.size, np.float32), history, [0, history.size]), shape=(1, snap.model.n_items)
            )
            folding = asyncio.get_running_loop().run_in_executor(side_pool, snap.model.fold_in, history_row)
            try:
                vector = (await asyncio.wait_for(folding, config.request_timeout_s))[0]
            except asyncio.TimeoutError:
                metrics.timeouts.inc()
                raise ClientError("request", f"fold-in timed out after {config.request_timeout_s:g} s", 504) from None
        vector = np.ascontiguousarray(vector, dtype=np.float32)
        past = snap.seen_codes(code) if code is not None else np.empty(0, np.int64)
        if history.size:
            past = np.union1d(past, history)
        if body.exclude_seen and past.size:
            past_keys = snap.code_to_key[past]  # removed items map to -1
            exclude.append(past_keys[past_keys >= 0])
        excl = np.unique(np.concatenate(exclude)) if exclude else np.empty(0, np.int64)
        hit = await score(Query(snap, vector, excl, subset, body.k, body.temperature))
        items = explain_hits(snap, hit, vector if body.explain else None, past, body.n_because)
        return JSONResponse(
            {
                "items": items,
                "log_normalizer": hit.log_normalizer if np.isfinite(hit.log_normalizer) else None,
                "generation": snap.generation,
                "user": body.user,
                "folded_in": folded,
            }
        )

    @app.post("/similar", response_model=ListResponse, responses={413: {}, 422: {}, 504: {}})
    async def similar(body: SimilarRequest):
        """Items most like the query items (dot product or cosine with the mean of their vectors)."""
        snap = holder.current
        check_k(body.k)
        query_keys = snap.keys(body.items, "items")
        subset, exclude = _filters(snap, body)
        if body.exclude_query:
            exclude.append(query_keys)
        vectors = snap.vectors(query_keys, cosine=body.metric == "cosine")
        vector = np.ascontiguousarray(vectors.mean(axis=0), dtype=np.float32)
        excl = np.unique(np.concatenate(exclude)) if exclude else np.empty(0, np.int64)
        hit = await score(Query(snap, vector, excl, subset, body.k, body.temperature, cosine=body.metric == "cosine"))
        return JSONResponse(
            {
                "items": explain_hits(snap, hit, None, np.empty(0, np.int64), 0),
                "log_normalizer": hit.log_normalizer if np.isfinite(hit.log_normalizer) else None,
                "generation": snap.generation,
            }
        )

    @app.get("/healthz")
    async def healthz():
        """Liveness: the process answers."""
        return {"status": "ok", "pid": os.getpid()}

    @app.get("/readyz", responses={503: {}})
    async def readyz():
        """Readiness: a model is loaded and the engine worker is running."""
        snap = holder.current
        if snap is None or not batcher.running:
            return _error(503, "not ready", None)
        return {"status": "ready", "generation": snap.generation, "items": snap.n_items, "source": snap.source}

    @app.get("/metrics")
    async def prometheus():
        """Prometheus text exposition."""
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    def admin(request: Request) -> None:
        if not config.admin_token:
            raise ClientError("authorization", f"admin endpoints are disabled (set {ADMIN_TOKEN_ENV})", 403)
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), config.admin_token.encode()):
            raise ClientError("authorization", "missing or wrong admin token (Authorization: Bearer ...)", 401)

    async def swap(build) -> dict:
        async with holder.lock:  # one admin change at a time, each built on the latest snapshot
            old = holder.current
            new = await asyncio.get_running_loop().run_in_executor(side_pool, build, old)
            holder.current = new  # one reference assignment: requests see the old or the new, never a mix
        metrics.generation.set(new.generation)
        metrics.items.set(new.n_items)
        logger.info("serving generation %d (%d items) from %s", new.generation, new.n_items, new.source)
        return {"generation": new.generation, "items": new.n_items, "source": new.source}

    @app.post("/admin/reload", response_model=AdminResponse, dependencies=[Depends(admin)])
    async def reload(body: ReloadRequest):
        """Load another model directory and swap it in; in-flight requests finish on the old one."""

        def build(old: Snapshot) -> Snapshot:
            try:
                return load_snapshot(body.model_dir, generation=old.generation + 1)
            except (OSError, ValueError) as exc:
                raise ClientError("model_dir", f"cannot load {body.model_dir!r}: {exc}") from exc

        return await swap(build)

    @app.post("/admin/items", response_model=AdminResponse, dependencies=[Depends(admin)])
    async def items(body: ItemsRequest):
        """Add, update and remove catalogue items through the live index, swapped in as one new snapshot."""

        def build(old: Snapshot) -> Snapshot:
            if any(len(item.vector) != old.dim for item in body.add):
                raise ClientError("add.vector", f"each vector needs the model's width, {old.dim} numbers")
            vectors = np.asarray([item.vector for item in body.add], dtype=np.float64).reshape(len(body.add), old.dim)
            if not np.isfinite(vectors).all() or (np.abs(vectors) > 1e30).any():
                raise ClientError("add.vector", "vectors must be finite (and below 1e30 in magnitude)")
            return old.with_items(
                [item.id for item in body.add],
                vectors.astype(np.float32),
                [item.label for item in body.add],
                list(body.remove),
                old.generation + 1,
            )

        return await swap(build)

    return app
