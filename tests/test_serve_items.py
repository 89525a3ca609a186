"""Item updates through the live ItemIndex behind ``POST /admin/items``.

After a sequence of adds, updates and removes over HTTP, ``/recommend`` and ``/similar`` must answer
exactly what the engine answers on an index built from scratch with the final items (external ids), and
updates racing with requests must fail none of them.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'mmrec_fast[serve]')")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
pytest.importorskip("httpx", reason="the [serve] extra is not installed")
pytest.importorskip("torch", reason="serving a hybrid model needs the [models] extra")

from test_serve import N_ITEMS, TOKEN, _save_model, _Server, _uid  # noqa: E402

import mmrec_fast as mf  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_items")
    _, train = _save_model(root / "m", seed=3)
    return root / "m", train


def _app(model_dir):
    from mmrec_fast.serve import ServeConfig, create_app, load_snapshot

    snap = load_snapshot(model_dir)
    return _Server(create_app(ServeConfig(str(model_dir), admin_token=TOKEN), snapshot=snap)), snap


def _post_items(srv, body):
    r = srv.client.post("/admin/items", json=body, headers=AUTH)
    assert r.status_code == 200, r.text
    return r.json()


def test_updates_match_an_index_rebuilt_from_scratch(model_dir):
    path, train = model_dir
    srv, snap = _app(path)
    try:
        rng = np.random.default_rng(7)
        dim = snap.dim
        catalogue = {1000 + i: v for i, v in enumerate(snap.items.astype(np.float32))}  # external id -> vector
        top_user0 = srv.client.post("/recommend", json={"user": _uid(0), "k": 1}).json()["items"][0]["item"]
        big = rng.normal(size=dim).astype(np.float32)
        big *= 50.0 / np.linalg.norm(big)
        steps = [
            # new ids (one with a tie to an existing vector: ties go to the lower external id), an update
            {
                "add": [
                    {"id": 5000, "vector": big.tolist(), "label": "big"},
                    {"id": 999, "vector": catalogue[1003].tolist()},
                ]
            },
            {"add": [{"id": 1010, "vector": rng.normal(size=dim).tolist(), "label": "changed"}], "remove": [top_user0]},
            {"remove": [1003, 5000]},
            {"add": [{"id": 1003, "vector": rng.normal(size=dim).tolist()}]},  # removed, then added again
        ]
        for step in steps:
            for item in step.get("add", []):
                catalogue[item["id"]] = np.asarray(item["vector"], dtype=np.float32)
            for gone in step.get("remove", []):
                del catalogue[gone]
            body = _post_items(srv, step)
            assert body["items"] == len(catalogue)
        ids = np.asarray(sorted(catalogue), dtype=np.int64)
        fresh = mf.ItemIndex(np.stack([catalogue[i] for i in ids]), ids=ids)
        assert srv.client.get("/readyz").json()["items"] == len(ids)

        for code in (0, 5, 17):
            seen = train[code].indices + 1000
            seen = seen[seen != 1003]  # removed and added again: a new item, not one the user had seen
            r = srv.client.post("/recommend", json={"user": _uid(code), "k": 15, "explain": True})
            assert r.status_code == 200, r.text
            body = r.json()
            want = fresh.topk(snap.user_vectors[code : code + 1], 15, exclude=[seen])
            listed = want.indices[0] >= 0
            assert [it["item"] for it in body["items"]] == want.indices[0][listed].tolist()
            np.testing.assert_array_equal([it["score"] for it in body["items"]], want.scores[0][listed])
            assert body["log_normalizer"] == pytest.approx(float(want.log_normalizer[0]), rel=1e-6, abs=1e-6)
            for it in body["items"]:
                assert sum(it["contributions"].values()) == pytest.approx(it["score"], rel=1e-4, abs=1e-4)
                if it["item"] in (999, 1003):  # added after training (or re-added): no "because you liked"
                    assert it["because_you_liked"] == []
            assert {it["item"]: it["label"] for it in body["items"]}.get(1010, "changed") == "changed"

        for metric in ("dot", "cosine"):
            r = srv.client.post("/similar", json={"items": [999, 1020], "k": 8, "metric": metric})
            assert r.status_code == 200, r.text
            # /similar scores the float32 mean of the query items' (unit) vectors against the catalogue
            rows = np.stack([catalogue[i] for i in ids])
            if metric == "cosine":
                norms = np.linalg.norm(rows.astype(np.float64), axis=1, keepdims=True)
                rows = (rows / norms).astype(np.float32)
            index = mf.ItemIndex(rows, ids=ids)
            query = index.vectors([999, 1020]).mean(axis=0, keepdims=True)
            ref = index.topk(query, 8, exclude=[[999, 1020]])
            assert [it["item"] for it in r.json()["items"]] == ref.indices[0].tolist()

        # removed ids are unknown everywhere; the re-added one is known again
        for route, body in (("/similar", {"items": [5000]}), ("/recommend", {"user": _uid(0), "allow": [5000]})):
            r = srv.client.post(route, json=body)
            assert r.status_code == 422 and r.json()["field"] in ("items", "allow")
        r = srv.client.post("/admin/items", json={"remove": [5000]}, headers=AUTH)
        assert r.status_code == 422 and r.json()["field"] == "remove"
        r = srv.client.post(
            "/admin/items", json={"add": [{"id": 7, "vector": [0.0] * dim}], "remove": [7]}, headers=AUTH
        )
        assert r.status_code == 422
        assert srv.client.get("/readyz").json()["items"] == len(ids)  # a refused write changes nothing
    finally:
        srv.close()


def test_concurrent_updates_fail_no_request(model_dir):
    path, _ = model_dir
    srv, snap = _app(path)
    failures, answered, stop = [], [0], threading.Event()
    rng = np.random.default_rng(11)

    def client(seed):
        import httpx

        with httpx.Client(base_url=srv.url, timeout=30) as c:
            i = seed
            while not stop.is_set():
                i += 1
                route, body = (
                    ("/recommend", {"user": _uid(i % 40), "k": 10, "explain": True})
                    if i % 3
                    else ("/similar", {"items": [1000 + i % N_ITEMS], "k": 5, "metric": "cosine"})
                )
                r = c.post(route, json=body)
                if r.status_code != 200:
                    failures.append((route, r.status_code, r.text))
                else:
                    answered[0] += 1

    try:
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(client, s) for s in range(4)]
            for step in range(30):
                new = 6000 + step
                body = {"add": [{"id": new, "vector": rng.normal(size=snap.dim).tolist(), "label": f"n{step}"}]}
                if step >= 2:
                    body["remove"] = [new - 2]
                if step % 5 == 0:  # update a trained item the clients ask about
                    body["add"].append({"id": 1000 + step, "vector": rng.normal(size=snap.dim).tolist()})
                _post_items(srv, body)
            stop.set()
            for f in futures:
                f.result(60)
        assert failures == [] and answered[0] > 10
    finally:
        stop.set()
        srv.close()
