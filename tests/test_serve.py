"""The HTTP service (mmrec_fast.serve): a real uvicorn server on a free localhost port, called over HTTP.

Results are checked against the float64 reference (mmrec_fast.reference) on the served model's own
vectors; every client error must be a 4xx JSON body naming the field, never a 500.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import scipy.sparse as sp

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'mmrec_fast[serve]')")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
pytest.importorskip("prometheus_client", reason="the [serve] extra is not installed")
httpx = pytest.importorskip("httpx", reason="the [serve] extra is not installed")
pytest.importorskip("torch", reason="serving a hybrid model needs the [models] extra")

from mmrec_fast.reference import topk_reference  # noqa: E402

N_USERS, N_ITEMS, TOKEN = 40, 90, "test-token"


def _save_model(path, seed: int):
    from mmrec_fast.data import IdMap
    from mmrec_fast.models import HybridMF, TrainConfig, save_model

    rng = np.random.default_rng(seed)
    train = sp.random(N_USERS, N_ITEMS, density=0.1, format="csr", random_state=seed)
    train.data[:] = 1.0
    features = rng.normal(size=(N_ITEMS, 7)).astype(np.float32)
    config = TrainConfig(dim=5, content_dim=3, epochs=2, progress=False, seed=seed)
    model = HybridMF(N_USERS, N_ITEMS, features, config, feature_blocks={"text": (0, 4), "image": (4, 7)}).fit(train)
    labels = json.dumps([f"title {i}" for i in range(N_ITEMS)])
    save_model(
        model,
        path,
        user_map=IdMap([_uid(i) for i in range(N_USERS)], "user"),
        item_map=IdMap(np.arange(N_ITEMS) + 1000, "item"),
        extra_files={
            "train_matrix.npz": lambda p: sp.save_npz(p, train),
            "item_labels.json": lambda p: p.write_text(labels, encoding="utf-8"),
        },
    )
    return model, train


def _uid(code: int) -> str:
    """External user id of a code (zero-padded: IdMap sorts string ids, so codes follow this order)."""
    return f"u{code:03d}"


class _Server:
    """uvicorn in a daemon thread on a socket bound to a free port."""

    def __init__(self, app):
        import uvicorn

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        self.client = httpx.Client(base_url=self.url, timeout=30)
        for _ in range(400):
            try:
                if self.client.get("/readyz").status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.025)
        raise RuntimeError("server did not become ready")

    def close(self):
        self.client.close()
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_models")
    m1, train1 = _save_model(root / "m1", seed=1)
    m2, _ = _save_model(root / "m2", seed=2)
    return {"m1": root / "m1", "m2": root / "m2", "model": m1, "train": train1}


@pytest.fixture(scope="module")
def server(models):
    from mmrec_fast.serve import ServeConfig, create_app

    srv = _Server(create_app(ServeConfig(str(models["m1"]), admin_token=TOKEN, max_k=50)))
    yield srv
    srv.close()


@pytest.fixture(scope="module")
def snapshot(models):
    from mmrec_fast.serve import load_snapshot

    return load_snapshot(models["m1"])


def _expected(users, items, k, exclude_rows, temperature=1.0, allow=None):
    excl = [np.asarray(sorted(set(exclude_rows)), dtype=np.int64)]
    indptr = np.asarray([0, excl[0].size])
    mask = None
    if allow is not None:
        mask = np.zeros(items.shape[0], dtype=bool)
        mask[allow] = True
    return topk_reference(
        users[None, :], items, k, excl_indptr=indptr, excl_indices=excl[0], temperature=temperature, allow=mask
    )


def _check_list(body, ref, ids_of_rows):
    ref_rows = ref[0][0] if isinstance(ref, tuple) else ref.indices[0]
    ref_scores = ref[1][0] if isinstance(ref, tuple) else ref.scores[0]
    listed = ref_rows >= 0
    assert [it["item"] for it in body["items"]] == ids_of_rows(ref_rows[listed]).tolist()
    np.testing.assert_allclose([it["score"] for it in body["items"]], ref_scores[listed], rtol=1e-5, atol=1e-5)


def _ref_parts(ref):
    """(indices, scores, log_normalizer) of the reference result, whatever its container."""
    if isinstance(ref, tuple):
        return ref[0], ref[1], ref[2]
    return ref.indices, ref.scores, ref.log_normalizer


@pytest.mark.parametrize("temperature", [1.0, 0.05, 40.0])
def test_known_user_matches_reference(server, snapshot, models, temperature):
    code = 7
    seen = models["train"][code].indices
    r = server.client.post("/recommend", json={"user": _uid(7), "k": 12, "temperature": temperature})
    assert r.status_code == 200, r.text
    body = r.json()
    idx, scores, lse = _ref_parts(_expected(snapshot.user_vectors[code], snapshot.items, 12, seen, temperature))
    listed = idx[0] >= 0
    assert [it["item"] for it in body["items"]] == (idx[0][listed] + 1000).tolist()
    np.testing.assert_allclose([it["score"] for it in body["items"]], scores[0][listed], rtol=1e-5, atol=1e-5)
    probs = np.exp(scores[0][listed] / temperature - lse[0])
    np.testing.assert_allclose([it["probability"] for it in body["items"]], probs, rtol=1e-4, atol=1e-7)
    assert body["log_normalizer"] == pytest.approx(float(lse[0]), rel=1e-5, abs=1e-5)
    assert not set(it["item"] - 1000 for it in body["items"]) & set(seen.tolist())
    assert all(it["label"] == f"title {it['item'] - 1000}" for it in body["items"])


def test_explain_contributions_sum_to_score_and_because_is_history(server, models):
    r = server.client.post("/recommend", json={"user": _uid(3), "k": 5, "explain": True, "n_because": 2})
    assert r.status_code == 200, r.text
    seen = set((models["train"][3].indices + 1000).tolist())
    for item in r.json()["items"]:
        assert set(item["contributions"]) == {"id", "text", "image", "bias"}
        assert sum(item["contributions"].values()) == pytest.approx(item["score"], rel=1e-4, abs=1e-4)
        liked = item["because_you_liked"]
        assert len(liked) == min(2, len(seen))
        assert {b["item"] for b in liked} <= seen
        sims = [b["similarity"] for b in liked]
        assert sims == sorted(sims, reverse=True)


def test_fold_in_unknown_user(server, snapshot, models):
    history = [1001, 1010, 1020, 1030]
    r = server.client.post("/recommend", json={"user": "new-user", "history": history, "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["folded_in"] is True
    rows = sp.csr_matrix((np.ones(4), np.asarray(history) - 1000, [0, 4]), shape=(1, N_ITEMS))
    vector = models["model"].fold_in(rows)[0]
    idx, _, _ = _ref_parts(_expected(vector, snapshot.items, 8, np.asarray(history) - 1000))
    assert [it["item"] for it in body["items"]] == (idx[0][idx[0] >= 0] + 1000).tolist()


def test_filters_allow_ban_candidates(server, snapshot, models):
    code, seen = 11, models["train"][11].indices
    allow = [1000 + i for i in range(0, 60, 2)]
    cands = [1000 + i for i in range(0, 90, 3)]
    ban = [1000 + i for i in range(0, 90, 4)]
    r = server.client.post(
        "/recommend", json={"user": _uid(11), "k": 50, "allow": allow, "candidates": cands, "ban": ban}
    )
    assert r.status_code == 200, r.text
    eligible = sorted((set(allow) & set(cands)) - set(ban) - set((seen + 1000).tolist()))
    rows = np.asarray(eligible, dtype=np.int64) - 1000
    idx, scores, lse = _ref_parts(_expected(snapshot.user_vectors[code], snapshot.items, 50, [], allow=rows))
    body = r.json()
    assert [it["item"] for it in body["items"]] == (idx[0][idx[0] >= 0] + 1000).tolist()
    assert len(body["items"]) == len(eligible)  # k > eligible: padding is dropped, not sent
    assert sum(it["probability"] for it in body["items"]) == pytest.approx(1.0, abs=1e-4)
    # Ban only (the batched path: bans become exclusions).
    r = server.client.post("/recommend", json={"user": _uid(11), "k": 50, "ban": ban, "exclude_seen": False})
    body = r.json()
    assert not {it["item"] for it in body["items"]} & set(ban)
    assert len(body["items"]) == min(50, N_ITEMS - len(ban))


def test_everything_filtered_gives_empty_list(server):
    r = server.client.post("/recommend", json={"user": _uid(2), "allow": [1005], "ban": [1005]})
    assert r.status_code == 200
    assert r.json()["items"] == [] and r.json()["log_normalizer"] is None


@pytest.mark.parametrize("metric", ["dot", "cosine"])
def test_similar_items(server, snapshot, metric):
    r = server.client.post("/similar", json={"items": [1004, 1040], "k": 6, "metric": metric})
    assert r.status_code == 200, r.text
    items = snapshot.items.astype(np.float64)
    if metric == "cosine":
        items = items / np.linalg.norm(items, axis=1, keepdims=True)
    query = items[[4, 40]].mean(axis=0)
    idx, _, _ = _ref_parts(_expected(query, items, 6, [4, 40]))
    assert [it["item"] for it in r.json()["items"]] == (idx[0] + 1000).tolist()


def _allow_of(user: int) -> list[int] | None:
    """Every third user restricts its query to a user-specific subset (batched through ``candidates``)."""
    return None if user % 3 else [1000 + i for i in range(user % 7, N_ITEMS, 5)]


def test_concurrent_requests_are_batched_and_exact(server, snapshot, models):
    users = list(range(N_USERS))

    def one(user):
        payload = {"user": _uid(user), "k": 4 + user % 3}
        if _allow_of(user) is not None:
            payload["allow"] = _allow_of(user)
        return server.client.post("/recommend", json=payload).json()

    before = _metric(server, "mmrec_batch_size_count")
    with ThreadPoolExecutor(16) as pool:
        bodies = list(pool.map(one, users * 2))
    batches = _metric(server, "mmrec_batch_size_count") - before
    assert batches < len(bodies)  # at least one engine call served several requests
    for user, body in zip(users * 2, bodies):
        code, k, allow = user, 4 + user % 3, _allow_of(user)
        rows = None if allow is None else np.asarray(allow) - 1000
        vec, seen = snapshot.user_vectors[code], models["train"][code].indices
        idx, scores, lse = _ref_parts(_expected(vec, snapshot.items, k, seen, allow=rows))
        assert [it["item"] for it in body["items"]] == (idx[0][idx[0] >= 0] + 1000).tolist()
        assert body["log_normalizer"] == pytest.approx(float(lse[0]), rel=1e-5, abs=1e-5)


def _metric(server, name: str) -> float:
    text = server.client.get("/metrics").text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name))


def test_health_ready_metrics_openapi(server):
    assert server.client.get("/healthz").json()["status"] == "ok"
    assert server.client.get("/readyz").json()["items"] == N_ITEMS
    text = server.client.get("/metrics").text
    for name in ("mmrec_requests_total", "mmrec_request_seconds_bucket", "mmrec_batch_size_bucket"):
        assert name in text
    assert "process_resident_memory_bytes" in text
    paths = server.client.get("/openapi.json").json()["paths"]
    assert {"/recommend", "/similar", "/admin/reload", "/admin/items"} <= set(paths)


BAD_REQUESTS = [
    ("/recommend", {"user": "nobody"}, 404, "user"),
    ("/recommend", {"user": 7}, 422, "user"),
    ("/recommend", {"user": True}, 422, "user"),
    ("/recommend", {}, 422, "user"),
    ("/recommend", {"user": _uid(1), "k": 0}, 422, "k"),
    ("/recommend", {"user": _uid(1), "k": 51}, 422, "k"),
    ("/recommend", {"user": _uid(1), "k": 2.5}, 422, "k"),
    ("/recommend", {"user": _uid(1), "k": "ten"}, 422, "k"),
    ("/recommend", {"user": _uid(1), "temperature": 0}, 422, "temperature"),
    ("/recommend", {"user": _uid(1), "temperature": -1}, 422, "temperature"),
    ("/recommend", {"user": _uid(1), "ban": [1000, 99]}, 422, "ban"),
    ("/recommend", {"user": _uid(1), "ban": ["1000"]}, 422, "ban"),
    ("/recommend", {"user": _uid(1), "allow": [2**70]}, 422, "allow"),
    ("/recommend", {"user": _uid(1), "candidates": "1000"}, 422, "candidates"),
    ("/recommend", {"history": [1000, 5]}, 422, "history"),
    ("/recommend", {"history": [1000] * 5001}, 422, "history"),
    ("/recommend", {"user": _uid(1), "n_because": 1000}, 422, "n_because"),
    ("/recommend", {"user": _uid(1), "explainn": True}, 422, "explainn"),
    ("/recommend", [1, 2], 422, "body"),
    ("/similar", {"items": []}, 422, "items"),
    ("/similar", {"items": [1000], "metric": "l2"}, 422, "metric"),
    ("/similar", {"items": [77]}, 422, "items"),
]


@pytest.mark.parametrize(("path", "payload", "status", "field"), BAD_REQUESTS)
def test_bad_requests_are_4xx_naming_the_field(server, path, payload, status, field):
    r = server.client.post(path, json=payload)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field
    assert field in r.json()["error"]


def test_malformed_and_oversized_bodies(server):
    r = server.client.post("/recommend", content=b'{"user": ', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == "body"
    r = server.client.post("/recommend", content=b"x" * ((1 << 20) + 1), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["field"] == "body"

    def chunks():  # no Content-Length: the limit applies to what arrives
        for _ in range(40):
            yield b"x" * 65536

    r = server.client.post("/recommend", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert server.client.get("/recommend").status_code == 405
    assert server.client.get("/nowhere").status_code == 404


def test_slow_body_and_engine_timeouts(models, snapshot):
    from mmrec_fast.serve import ServeConfig, create_app

    srv = _Server(
        create_app(ServeConfig(str(models["m1"]), body_timeout_s=0.3, request_timeout_s=1e-9), snapshot=snapshot)
    )
    try:
        host, port = srv.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            conn.sendall(
                b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
            )
            reply = conn.recv(4096).decode()
        assert reply.startswith("HTTP/1.1 408"), reply
        r = srv.client.post("/recommend", json={"user": _uid(1)})
        assert r.status_code == 504 and r.json()["field"] == "request"
    finally:
        srv.close()


def test_admin_disabled_without_token_and_needs_the_right_one(server, models, snapshot):
    from mmrec_fast.serve import ServeConfig, create_app

    r = server.client.post("/admin/reload", json={"model_dir": str(models["m2"])})
    assert r.status_code == 401
    r = server.client.post(
        "/admin/reload", json={"model_dir": str(models["m2"])}, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401
    srv = _Server(create_app(ServeConfig(str(models["m1"])), snapshot=snapshot))
    try:
        r = srv.client.post("/admin/items", json={"remove": [1000]}, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403 and "MMREC_FAST_ADMIN_TOKEN" in r.json()["error"]
    finally:
        srv.close()


def _admin(server, path, payload):
    return server.client.post(path, json=payload, headers={"Authorization": f"Bearer {TOKEN}"})


def test_admin_item_updates(models, snapshot):
    from mmrec_fast.serve import ServeConfig, create_app

    srv = _Server(create_app(ServeConfig(str(models["m1"]), admin_token=TOKEN), snapshot=snapshot))
    try:
        top = srv.client.post("/recommend", json={"user": _uid(5), "k": 3}).json()["items"][0]["item"]
        vector = (snapshot.user_vectors[5] * 100).tolist()
        r = _admin(srv, "/admin/items", {"remove": [top], "add": [{"id": 5000, "vector": vector, "label": "new"}]})
        assert r.status_code == 200, r.text
        assert r.json()["items"] == N_ITEMS
        body = srv.client.post("/recommend", json={"user": _uid(5), "k": 3, "explain": True}).json()
        assert body["items"][0]["item"] == 5000 and body["items"][0]["label"] == "new"
        assert body["items"][0]["because_you_liked"] == []  # no representation for an item added later
        assert top not in [it["item"] for it in body["items"]]
        assert srv.client.post("/recommend", json={"user": _uid(5), "allow": [top]}).status_code == 422
        bad = [
            ({"add": [{"id": 6000, "vector": [1.0]}]}, "add.vector"),
            ({"add": [{"id": 6000, "vector": [1e300] * snapshot.dim}]}, "add.vector"),
            ({"add": [{"id": "x", "vector": vector}]}, "add.id"),
            ({"remove": [123456]}, "remove"),
            ({"add": [{"id": 5000, "vector": vector}], "remove": [5000]}, "add.id"),
        ]
        for payload, field in bad:
            r = _admin(srv, "/admin/items", payload)
            assert r.status_code == 422 and r.json()["field"] == field, (payload, r.text)
        nan = b'{"add": [{"id": 6000, "vector": [' + b", ".join([b"NaN"] * snapshot.dim) + b"]}]}"
        headers = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
        r = srv.client.post("/admin/items", content=nan, headers=headers)
        assert r.status_code == 422 and r.json()["field"] == "add.vector", r.text
        assert srv.client.get("/readyz").json()["generation"] == 1  # refused updates changed nothing
    finally:
        srv.close()


def test_reload_under_load_drops_nothing(models, snapshot):
    from mmrec_fast.serve import ServeConfig, create_app, load_snapshot

    other = load_snapshot(models["m2"])
    srv = _Server(create_app(ServeConfig(str(models["m1"]), admin_token=TOKEN), snapshot=snapshot))
    stop, failures, answered = threading.Event(), [], []

    def hammer(i):
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/recommend", json={"user": _uid(i), "k": 5})
                if r.status_code != 200:
                    failures.append(r.text)
                else:
                    answered.append((i, r.json()))

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    try:
        for n in range(6):
            r = _admin(srv, "/admin/reload", {"model_dir": str(models["m2" if n % 2 == 0 else "m1"])})
            assert r.status_code == 200, r.text
            time.sleep(0.05)
        r = _admin(srv, "/admin/reload", {"model_dir": str(models["m1"] / "missing")})
        assert r.status_code == 422 and r.json()["field"] == "model_dir"
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        srv.close()
    assert failures == [] and len(answered) > 20
    # Every answer is exactly the list of the generation that produced it (odd: m2, even: m1).
    for i, body in answered:
        snap = other if body["generation"] % 2 == 1 else snapshot
        seen = snap.seen_rows(i)
        idx, _, _ = _ref_parts(_expected(snap.user_vectors[i], snap.items, 5, seen))
        assert [it["item"] for it in body["items"]] == (idx[0] + 1000).tolist()


def test_extreme_temperatures(server):
    r = server.client.post("/recommend", json={"user": _uid(4), "k": 3, "temperature": 1e-30})
    assert r.status_code == 200, r.text
    assert [it["probability"] for it in r.json()["items"]] == [1.0, 0.0, 0.0]
    r = server.client.post("/recommend", json={"user": _uid(4), "k": 3, "temperature": 1e300})
    assert r.status_code == 200, r.text
    probs = [it["probability"] for it in r.json()["items"]]
    assert probs[0] == pytest.approx(probs[-1]) and probs[0] < 1.0
    # Scores / temperature past float32: refused as the request's own error, not a 500.
    r = server.client.post("/recommend", json={"user": _uid(4), "k": 3, "temperature": 1e-38})
    assert r.status_code == 422 and r.json()["field"] == "temperature", r.text


def test_a_refused_query_does_not_fail_its_batch(server):
    payloads = [{"user": _uid(i), "k": 3, "temperature": 1e-38 if i == 5 else 0.5} for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda p: server.client.post("/recommend", json=p).status_code, payloads))
    assert statuses == [422 if i == 5 else 200 for i in range(16)]


def test_item_updates_under_load_drop_nothing(models, snapshot):
    from mmrec_fast.serve import ServeConfig, create_app

    srv = _Server(create_app(ServeConfig(str(models["m1"]), admin_token=TOKEN), snapshot=snapshot))
    stop, failures, answered = threading.Event(), [], [0]

    def hammer(i):
        with httpx.Client(base_url=srv.url, timeout=30) as client:
            while not stop.is_set():
                r = client.post("/recommend", json={"user": _uid(i), "k": 5, "ban": [1001], "explain": True})
                if r.status_code != 200:
                    failures.append(r.text)
                answered[0] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 30
        while answered[0] < 6 and time.monotonic() < deadline:  # the load is running before updates start
            time.sleep(0.01)
        vector = [0.5] * snapshot.dim
        for n in range(6):
            change = {"add": [{"id": 7000 + n, "vector": vector}], "remove": [1010 + n]}
            assert _admin(srv, "/admin/items", change).status_code == 200
            time.sleep(0.02)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
        final = srv.client.get("/readyz").json()
        srv.close()
    assert failures == [] and answered[0] >= 6
    assert final["generation"] == 6 and final["items"] == N_ITEMS
