"""The backend registry: graceful degradation, one clear warning, doctests of the public API."""

import doctest
import importlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mmrec_fast as mf


def test_broken_native_extension_degrades_with_one_warning():
    # Simulate a missing/broken build: importing mmrec_fast._native fails.
    script = textwrap.dedent("""
        import sys, warnings
        sys.modules["mmrec_fast._native"] = None   # makes `from mmrec_fast import _native` raise ImportError
        import numpy as np
        import mmrec_fast as mf
        status = mf.available_backends()
        assert not status["native"].available and "Error" in status["native"].detail, status
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            a = mf.topk(np.ones((2, 3)), np.eye(5, 3), 2)
            b = mf.topk(np.ones((2, 3)), np.eye(5, 3), 2)
        messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
        assert len(messages) == 1, messages
        assert "using the 'numba' backend" in messages[0] and "native" in messages[0], messages
        assert (a.indices == b.indices).all()
        try:
            mf.topk(np.ones((2, 3)), np.eye(5, 3), 2, backend="native")
        except ValueError as exc:
            assert "backend 'native' is not available here" in str(exc)
        else:
            raise AssertionError("explicit native request should fail")
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr


def test_available_backends_reports_every_backend():
    status = mf.available_backends()
    assert list(status) == ["native", "numba", "numpy", "cuda", "cupy", "torch"]
    assert status["numpy"].available
    for s in status.values():
        assert s.detail  # what it is, or why not


MODULES = [
    "mmrec_fast",
    "mmrec_fast.engine",
    "mmrec_fast.index",
    "mmrec_fast.softmax",
    "mmrec_fast.merge",
    "mmrec_fast.backends",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    failures, tried = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert failures == 0


def test_progress_bar(capsys):
    users, items = np.ones((5, 2)), np.ones((7, 2))
    mf.topk(users, items, 3, progress=True)
    assert "topk" in capsys.readouterr().err
