"""Load test of ``mmrec-fast serve`` (issue #18): an asyncio client against real servers, loopback only.

For each model (ML-100K hybrid; synthetic 1M items, d = 64) it starts two ``mmrec-fast serve --workers 1``
servers (supervised workers), micro-batching on and off, and runs 1, 16 and 64 concurrent clients against
each, the two runs of a pair back to back (order alternating) so they share the machine's load of the moment,
for ``--seconds`` each (closed loop: every client sends its next request when the last one returns;
random known users, k = 10), plus one open-loop run at ``--rate`` requests/s over 64 connections on the
batching server (latency from each request's scheduled time, so queueing counts). It reports
throughput, p50/p99 latency, errors and the worker's RSS at the start and end of each run (from
``/metrics``). Two stress runs follow on the batching server: reloads
every ``--reload-every`` seconds under 64 clients (failed requests must be 0) and a SIGKILL of the worker
under 16 clients (failed requests and the time until the supervisor's new worker answers).

Bounded: every run stops after ``--seconds`` (and ``--max-requests``); requests time out after 30 s; the
server binds 127.0.0.1. The output (text + JSON) names the machine, its load average and the config, so
a run on a shared machine is labelled as such.

    python benchmarks/load_test.py --seconds 60 --out docs/benchmarks/serve_load
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TOKEN = "load-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def build_ml100k(out: Path) -> Path:
    """ML-100K hybrid (genre multi-hot + year features) trained on every interaction, saved like ``train``."""
    import scipy.sparse as sp

    from mmrec_fast.data import load_movielens_100k
    from mmrec_fast.models import HybridMF, TrainConfig, save_model

    data = load_movielens_100k()
    genres = sorted({g for gs in data.item_features["genres"] for g in gs})
    feats = np.zeros((data.n_items, len(genres) + 1), dtype=np.float32)
    for row, gs in enumerate(data.item_features["genres"]):
        feats[row, [genres.index(g) for g in gs]] = 1.0
    year = data.item_features["year"].astype(float).fillna(1990).to_numpy()
    feats[:, -1] = (year - year.mean()) / (year.std() or 1.0)
    train = data.to_csr("ones", duplicates="sum")
    train.data[:] = 1.0
    config = TrainConfig(dim=32, content_dim=16, epochs=10, progress=False)
    blocks = {"genre": (0, len(genres)), "year": (len(genres), len(genres) + 1)}
    model = HybridMF(data.n_users, data.n_items, feats, config, feature_blocks=blocks).fit(train)
    labels = json.dumps([str(t) for t in data.item_features["title"]])
    path = out / "ml100k_hybrid"
    save_model(
        model,
        path,
        user_map=data.user_map,
        item_map=data.item_map,
        extra_files={
            "train_matrix.npz": lambda p: sp.save_npz(p, train),
            "item_labels.json": lambda p: p.write_text(labels, encoding="utf-8"),
        },
    )
    return path


def build_synthetic(out: Path, n_items: int, n_users: int = 10_000, dim: int = 64, seed: int = 0) -> Path:
    """A BPR-MF model whose weights are random: ``n_items`` items, vectors of width ``dim`` (bias included)."""
    import torch

    from mmrec_fast.models import BPRMF, TrainConfig, save_model

    model = BPRMF(n_users, n_items, TrainConfig(dim=dim - 1, progress=False))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.net.user_id.weight.normal_(0, 1, generator=gen)
        model.net.item_id.weight.normal_(0, 0.1, generator=gen)
        model.net.item_bias.weight.normal_(0, 0.1, generator=gen)
    path = out / f"synthetic_{n_items}"
    save_model(model, path)
    return path


class Server:
    """``mmrec-fast serve --workers 1`` in a subprocess (the supervisor and its worker)."""

    def __init__(self, model: Path, batching: bool, log: Path):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "mmrec_fast", "serve", "--model", str(model), "--port", str(self.port)]
        cmd += ["--log-level", "warning", "--request-timeout", "30"] + ([] if batching else ["--no-batching"])
        self.log = open(log, "ab")  # noqa: SIM115 -- closed in stop(), the server's lifetime
        self.proc = subprocess.Popen(cmd, env={**os.environ, "MMREC_FAST_ADMIN_TOKEN": TOKEN}, stderr=self.log)

    def wait_ready(self, timeout: float = 600) -> float:
        import httpx

        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(self.url + "/readyz", timeout=5).status_code == 200:
                    return time.monotonic() - start
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server not ready in time")

    def metric(self, name: str) -> float:
        import httpx

        text = httpx.get(self.url + "/metrics", timeout=30).text
        return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))

    def worker_pid(self) -> int:
        import httpx

        return int(httpx.get(self.url + "/healthz", timeout=30).json()["pid"])

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class _Conn:
    """One keep-alive HTTP/1.1 connection speaking just enough HTTP for POST /recommend.

    A bare asyncio stream instead of httpx.AsyncClient for the load itself: at 64 connections httpx's
    pool cost more CPU per request than the server did, on the same 2 cores, so the client, not the
    server, set the throughput. httpx still makes the admin, health and metrics calls.
    """

    def __init__(self, host: str, port: int):
        self.host, self.port, self.reader, self.writer = host, port, None, None

    async def post(self, path: str, payload: dict, timeout: float = 30.0) -> tuple[int, bytes]:
        body = json.dumps(payload).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        try:
            if self.writer is None:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.writer.write(head + body)
            return await asyncio.wait_for(self._response(), timeout)
        except BaseException:
            self.close()
            raise

    async def _response(self) -> tuple[int, bytes]:
        header = await self.reader.readuntil(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        length = next(int(x.split(":", 1)[1]) for x in lines[1:] if x.lower().startswith("content-length:"))
        data = await self.reader.readexactly(length)
        if any(x.lower() == "connection: close" for x in lines):
            self.close()
        return status, data

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(url, users, clients, seconds, max_requests, k, events=None):
    """Closed-loop load: ``clients`` coroutines (a connection each) posting /recommend until time or count run out."""
    import httpx

    host, port = url.removeprefix("http://").split(":")
    rng = np.random.default_rng(clients)
    latencies, errors, done = [], [], [0]
    sent_ok = []  # (send time, answer time) of successful requests (recovery measurement)
    end = time.monotonic() + seconds

    async def one_client():
        conn = _Conn(host, int(port))
        while time.monotonic() < end and done[0] < max_requests:
            user = users[int(rng.integers(len(users)))]
            done[0] += 1
            t0 = time.monotonic()
            try:
                status, data = await conn.post("/recommend", {"user": user, "k": k})
                ok = status == 200
                if not ok:
                    errors.append(f"{status} {data[:120]!r}")
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
                ok = False
                errors.append(f"{type(exc).__name__}: {exc}"[:160])
            t1 = time.monotonic()
            if ok:
                latencies.append(t1 - t0)
                sent_ok.append((t0, t1))
        conn.close()

    async with httpx.AsyncClient(base_url=url, timeout=600.0) as admin:
        start = time.monotonic()
        tasks = [asyncio.create_task(one_client()) for _ in range(clients)]
        if events is not None:
            tasks.append(asyncio.create_task(events(admin, end)))
        await asyncio.gather(*tasks)
        elapsed = max(time.monotonic() - start, 1e-9)
    lat = np.asarray(latencies) * 1000.0
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies) + len(errors),
        "ok": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "_successes": sent_ok,
    }


async def _open_loop(url, users, connections, rate, seconds, k):
    """Open-loop load: requests scheduled at ``rate`` per second over ``connections`` connections.

    Latency runs from each request's *scheduled* time, so time spent waiting for a free connection (the
    server falling behind) counts -- no coordinated omission.
    """
    host, port = url.removeprefix("http://").split(":")
    rng = np.random.default_rng(int(rate))
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(_Conn(host, int(port)))
    latencies, errors = [], []

    async def one(scheduled: float):
        conn = await idle.get()
        try:
            status, data = await conn.post("/recommend", {"user": users[int(rng.integers(len(users)))], "k": k})
            if status == 200:
                latencies.append(time.monotonic() - scheduled)
            else:
                errors.append(f"{status} {data[:120]!r}")
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError) as exc:
            errors.append(f"{type(exc).__name__}: {exc}"[:160])
        finally:
            idle.put_nowait(conn)

    start = time.monotonic()
    tasks, n = [], int(rate * seconds)
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(scheduled)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - start
    while not idle.empty():
        idle.get_nowait().close()
    lat = np.asarray(latencies) * 1000.0
    return {
        "clients": connections,
        "rate": rate,
        "seconds": round(elapsed, 2),
        "requests": n,
        "ok": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:5],
        "throughput_rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
    }


def _users(model_dir: Path) -> list:
    from mmrec_fast.models.io import load_model

    saved = load_model(model_dir)
    if saved.user_map is None:
        return list(range(min(saved.model.n_users, 10_000)))
    return [v.item() if isinstance(v, np.generic) else v for v in np.asarray(saved.user_map.ids)[:10_000]]


def _measured(server, name, batching, startup, run) -> dict:
    """``run()`` (one load run) with the server's batch sizes and RSS around it."""
    rss0 = server.metric("process_resident_memory_bytes")
    batches0, queries0 = server.metric("mmrec_batch_size_count"), server.metric("mmrec_batch_size_sum")
    res = run()
    res.pop("_successes", None)
    calls = server.metric("mmrec_batch_size_count") - batches0
    res.update(
        model=name,
        batching=batching,
        startup_s=round(startup, 1),
        mean_batch=round((server.metric("mmrec_batch_size_sum") - queries0) / max(calls, 1), 1),
        rss_start_mb=round(rss0 / 2**20),
        rss_end_mb=round(server.metric("process_resident_memory_bytes") / 2**20),
    )
    print(_row(res), flush=True)
    return res


def run_model(name, model_dir, args, log) -> list[dict]:
    """Both servers up at once; for each client count the batching run and the per-request run back to
    back (alternating which goes first), so the A/B pairs share the machine's load of the moment."""
    users = _users(model_dir)
    rows = []
    servers = {}
    try:
        for batching in (True, False):
            servers[batching] = Server(model_dir, batching, log)
        startups = {b: srv.wait_ready() for b, srv in servers.items()}
        for i, clients in enumerate(args.clients):
            for batching in (True, False) if i % 2 == 0 else (False, True):
                srv = servers[batching]
                rows.append(
                    _measured(
                        srv,
                        name,
                        batching,
                        startups[batching],
                        lambda srv=srv, c=clients: asyncio.run(
                            _load(srv.url, users, c, args.seconds, args.max_requests, args.k)
                        ),
                    )
                )
        if args.rate:
            srv = servers[True]
            run = lambda: asyncio.run(_open_loop(srv.url, users, max(args.clients), args.rate, args.seconds, args.k))  # noqa: E731
            rows.append(_measured(srv, name, True, startups[True], run))
    finally:
        for srv in servers.values():
            srv.stop()
    return rows


def run_stress(name, model_dir, args, log) -> list[dict]:
    """Reloads under 64 clients, then a SIGKILL of the worker under 16 clients (batching server)."""
    import httpx

    users = _users(model_dir)
    server = Server(model_dir, True, log)
    out = []
    try:
        server.wait_ready()
        reloads = []

        async def reload_events(client, end):
            while time.monotonic() < end - args.reload_every:
                await asyncio.sleep(args.reload_every)
                t0 = time.monotonic()
                r = await client.post(
                    "/admin/reload", json={"model_dir": str(model_dir)}, headers={"Authorization": f"Bearer {TOKEN}"}
                )
                reloads.append((r.status_code, round(time.monotonic() - t0, 2)))

        res = asyncio.run(_load(server.url, users, 64, args.seconds, args.max_requests, args.k, reload_events))
        res.pop("_successes")
        res.update(model=name, test="reload under load", reloads=len(reloads), reload_status=reloads)
        out.append(res)
        print(f"reload under load: {res['reloads']} reloads {reloads}, {res['errors']} failed of {res['requests']}")

        killed = {}

        async def kill_event(client, end):
            await asyncio.sleep(args.seconds / 3)
            pid = int((await client.get("/healthz")).json()["pid"])
            killed["t"] = time.monotonic()
            os.kill(pid, signal.SIGKILL)
            killed["pid"] = pid

        res = asyncio.run(_load(server.url, users, 16, args.seconds, args.max_requests, args.k, kill_event))
        # Recovery: from the kill to the first answer to a request sent after it.
        after = [t1 for t0, t1 in res.pop("_successes") if t0 >= killed.get("t", float("inf"))]
        recovery = round(min(after) - killed["t"], 2) if after else None
        new_pid = int(httpx.get(server.url + "/healthz", timeout=60).json()["pid"])
        res.update(model=name, test="kill worker under load", killed_pid=killed.get("pid"), new_pid=new_pid)
        res.update(recovery_s=recovery)
        out.append(res)
        print(f"kill worker: {res['errors']} failed of {res['requests']}, recovery {recovery} s, pid -> {new_pid}")
    finally:
        server.stop()
    return out


def _row(r) -> str:
    mode = "batched" if r["batching"] else "per-request"
    load = f"open loop {r['rate']:g}/s, {r['clients']} conns" if r.get("rate") else f"{r['clients']:>3} clients"
    return (
        f"{r['model']:<16} {mode:<12} {load}: {r['throughput_rps']:>8.1f} req/s  "
        f"p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms  errors {r['errors']}  mean batch {r['mean_batch']}  "
        f"RSS {r['rss_start_mb']} -> {r['rss_end_mb']} MB"
    )


def _machine() -> dict:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    stack = {}
    for module in ("fastapi", "uvicorn", "httptools", "uvloop"):
        try:
            stack[module] = __import__(module).__version__
        except (ImportError, AttributeError):
            stack[module] = None
    return {
        "commit": commit,
        "stack": stack,
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=60.0, help="seconds per run (issue: 60)")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    p.add_argument("--models", nargs="+", default=["ml100k", "synthetic"], choices=("ml100k", "synthetic"))
    p.add_argument("--items", type=int, default=1_000_000, help="synthetic catalogue size")
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--max-requests", type=int, default=1_000_000, help="cap per run")
    p.add_argument(
        "--rate", type=float, default=300.0, help="open-loop run at this many req/s over max(--clients) connections"
    )
    p.add_argument("--reload-every", type=float, default=2.0)
    p.add_argument("--no-stress", dest="stress", action="store_false", help="skip the reload and kill runs")
    p.add_argument("--out", help="write OUT.txt and OUT.json")
    p.add_argument("--workdir", help="keep built models here and reuse them (default: a temporary directory)")
    args = p.parse_args(argv)

    report = {"machine": _machine(), "config": {k: v for k, v in vars(args).items()}, "runs": [], "stress": []}
    report["client"] = "asyncio streams, one keep-alive HTTP/1.1 connection per client (closed loop), same machine"
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        models_dir = Path(args.workdir) if args.workdir else tmp
        log = tmp / "server.log"
        builders = {"ml100k": build_ml100k, "synthetic": lambda out: build_synthetic(out, args.items)}
        names = {"ml100k": "ml100k_hybrid", "synthetic": f"synthetic_{args.items}"}
        for name in args.models:
            t0 = time.monotonic()
            model_dir = models_dir / names[name]
            if not (model_dir / "model.json").exists():  # --workdir keeps built models for the next run
                model_dir = builders[name](models_dir)
            print(f"{name}: model ready in {time.monotonic() - t0:.1f} s ({model_dir})", flush=True)
            label = name if name == "ml100k" else f"synthetic-{args.items // 1000}k"
            report["runs"] += run_model(label, model_dir, args, log)
            if args.stress and name == args.models[0]:
                report["stress"] += run_stress(label, model_dir, args, log)
        report["server_log_tail"] = log.read_text(errors="replace").splitlines()[-20:] if log.exists() else []
    report["machine"]["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    lines = [
        f"mmrec-fast serve load test: {report['machine']}",
        f"config: {report['config']}",
        f"client: {report['client']}",
    ]
    lines += [_row(r) for r in report["runs"]]
    for model in dict.fromkeys(r["model"] for r in report["runs"]):
        for c in args.clients:
            closed = [r for r in report["runs"] if r["model"] == model and r["clients"] == c and not r.get("rate")]
            on = [r for r in closed if r["batching"]]
            off = [r for r in closed if not r["batching"]]
            if on and off and off[0]["throughput_rps"]:
                lines.append(f"{model} {c} clients: batching x{on[0]['throughput_rps'] / off[0]['throughput_rps']:.2f}")
    for s in report["stress"]:
        lines.append(json.dumps(s))
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out + ".txt").write_text(text + "\n", encoding="utf-8")
        Path(args.out + ".json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
