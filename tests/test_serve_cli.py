"""``mmrec-fast serve``: flag and model errors (in-process, fast) and the supervised worker's restart (slow)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from mmrec_fast.cli import main


def test_serve_refuses_a_missing_model(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "absent")]) == 2
    assert "--model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["serve", "--model", str(tmp_path / "empty")]) == 2


@pytest.mark.parametrize(
    "flags",
    [["--port", "70000"], ["--port", "x"], ["--workers", "2"], ["--max-wait-ms", "500"], ["--max-batch", "0"]],
)
def test_serve_bad_flags_exit_2(tmp_path, flags, capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--model", str(tmp_path), *flags])
    assert info.value.code == 2
    assert flags[0] in capsys.readouterr().err


@pytest.mark.slow
def test_supervisor_restarts_a_killed_worker(tmp_path):
    httpx = pytest.importorskip("httpx", reason="the [serve] extra is not installed")
    pytest.importorskip("fastapi", reason="the [serve] extra is not installed")
    pytest.importorskip("torch", reason="serving a BPR model needs the [models] extra")
    import numpy as np
    import scipy.sparse as sp

    from mmrec_fast.models import BPRMF, TrainConfig, save_model

    train = sp.random(20, 30, density=0.2, format="csr", random_state=0)
    save_model(BPRMF(20, 30, TrainConfig(dim=4, epochs=1, progress=False)).fit(train), tmp_path / "m")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmrec_fast", "serve", "--model", str(tmp_path / "m"), "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        while "worker" not in line:
            line = proc.stderr.readline()
        url = re.search(r"http://[\d.]+:\d+", line).group(0)

        def ready(deadline):
            while time.monotonic() < deadline:
                try:
                    return httpx.get(url + "/healthz", timeout=5).json()["pid"]
                except httpx.HTTPError:
                    time.sleep(0.1)
            raise AssertionError("no worker answered")

        first = ready(time.monotonic() + 120)
        os.kill(first, signal.SIGKILL)
        second = ready(time.monotonic() + 120)
        assert second != first
        r = httpx.post(url + "/recommend", json={"user": 3, "k": 2}, timeout=30)
        assert r.status_code == 200 and len(r.json()["items"]) == 2
        assert np.isfinite(r.json()["items"][0]["score"])
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert proc.returncode == 0
