"""The measurement scripts of benchmarks/ still run (tiny shapes; their numbers are not checked here)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
native = pytest.importorskip("mmrec_fast._native", reason="native extension not built")


def _run(*args):
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_native_ab_compares_a_build_with_itself():
    out = _run(
        "benchmarks/native_ab.py",
        "--builds",
        "a=.",
        "b=.",
        "--users",
        "40",
        "--items",
        "3000",
        "--dim",
        "8",
        "--ks",
        "5",
        "300",
        "--repeats",
        "1",
    )
    assert out.count("outputs identical across builds: True") == 2
    assert "cost of k" in out


def test_roofline_runs():
    out = _run(
        "benchmarks/roofline.py",
        "--users",
        "40",
        "--items",
        "3000",
        "--dims",
        "8",
        "--pairs",
        "1",
        "--sgemm-n",
        "64",
        "--sgemm-runs",
        "1",
    )
    assert "share per pair" in out
