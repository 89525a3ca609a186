"""Smoke test of ``benchmarks/load_test.py``: a tiny synthetic catalogue, ~1 s per run, no errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'mmrec_fast[serve]')")
pytest.importorskip("uvicorn", reason="the [serve] extra is not installed")
pytest.importorskip("httpx", reason="the [serve] extra is not installed")
pytest.importorskip("torch", reason="the synthetic model of the load test needs the [models] extra")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "load_test.py"


@pytest.mark.slow
def test_load_test_runs_on_a_tiny_catalogue(tmp_path):
    out = tmp_path / "smoke"
    args = ["--models", "synthetic", "--items", "2000", "--clients", "2", "--seconds", "1", "--rate", "0"]
    args += ["--no-stress", "--max-requests", "2000", "--out", str(out), "--workdir", str(tmp_path / "models")]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    runs = report["runs"]
    assert {run["batching"] for run in runs} == {True, False}  # batched and per-request, as in the full run
    for run in runs:
        assert run["errors"] == 0 and run["ok"] == run["requests"] > 0, run
        assert run["p50_ms"] <= run["p99_ms"]
    assert "synthetic-2k" in out.with_suffix(".txt").read_text(encoding="utf-8")
