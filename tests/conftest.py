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
