import os

import numpy as np
import pytest

# Tests must not inherit a backend override from the developer's shell.
os.environ.pop("MMREC_FAST_BACKEND", None)


@pytest.fixture
def rng(request):
    """A fresh generator per test, seeded from the test's name: random, but reproducible on failure."""
    seed = abs(hash(request.node.nodeid)) % (2**32)
    return np.random.default_rng(seed)
