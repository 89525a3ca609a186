import os
import secrets
import zlib

import numpy as np
import pytest

# Tests must not inherit a backend override from the developer's shell.
os.environ.pop("MMREC_FAST_BACKEND", None)

# Fresh random inputs every session, reproducible on demand: the session seed is printed in pytest's
# header, and MMREC_FAST_TEST_SEED=<that number> replays it. (Python's str hash is salted per process,
# so it cannot serve as a reproducible seed.)
SESSION_SEED = int(os.environ.get("MMREC_FAST_TEST_SEED") or secrets.randbelow(2**31))


def pytest_report_header(config):
    return f"mmrec_fast random inputs: MMREC_FAST_TEST_SEED={SESSION_SEED} (set it to replay this session)"


@pytest.fixture
def rng(request):
    """A generator per test: the session seed mixed with the test's id (zlib.crc32, stable across runs)."""
    return np.random.default_rng([SESSION_SEED, zlib.crc32(request.node.nodeid.encode())])


@pytest.fixture(autouse=True)
def _forced_simd_level(request, monkeypatch):
    """Tests parametrized with a ``simd`` marker (mmrec_fast.testing.BACKENDS) run at that native level."""
    marker = request.node.get_closest_marker("simd")
    if marker is not None:
        monkeypatch.setenv("MMREC_FAST_SIMD", marker.args[0])


# Variables that size thread pools or pick BLAS kernels: a test (or a module it imports, such as a
# benchmark script) that changes them poisons every later test in the process -- e.g. Numba refuses to
# compile once NUMBA_NUM_THREADS differs from the pool it launched. Checked after every test.
_PROCESS_WIDE_ENV = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
)


@pytest.fixture(autouse=True)
def _process_environment_unchanged():
    before = {name: os.environ.get(name) for name in _PROCESS_WIDE_ENV}
    yield
    after = {name: os.environ.get(name) for name in _PROCESS_WIDE_ENV}
    changed = {name: (before[name], after[name]) for name in before if before[name] != after[name]}
    for name, (old, _) in changed.items():  # restore, so one offender fails once, not every later test
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
    assert not changed, f"test changed process-wide environment variables (before, after): {changed}"
