"""The console entry points: demo output and the backend listing."""

import subprocess
import sys

import mmrec_fast as mf
from mmrec_fast.cli import main


def test_demo_small(capsys):
    assert main(["demo", "--synthetic", "--users", "120", "--items", "900", "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "Top-10 items of the first 3 users" in out
    lines = [line for line in out.splitlines() if line.strip().startswith("30  ")]
    assert lines, out
    naive_nan, ours_nan, engine_err = lines[0].split()[2], lines[0].split()[3], float(lines[0].split()[-1])
    assert int(naive_nan.split("/")[0]) > 0, "the naive formula should overflow at scale 30"
    assert int(ours_nan.split("/")[0]) == 0
    assert engine_err < 1e-2  # float32 scores of magnitude ~1e4: ulp-limited, see the demo's note
    for name, status in mf.available_backends().items():
        row = next(line for line in out.splitlines() if line.strip().startswith(name))
        if status.available:
            assert "100.0%" in row, row  # every list equals the reference on this well-separated problem


def test_module_entry_point_and_backends():
    proc = subprocess.run([sys.executable, "-m", "mmrec_fast", "backends"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in proc.stdout and "yes" in proc.stdout


def test_help_without_command(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().err
