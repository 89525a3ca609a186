"""Regression-tracking benchmarks (pytest-benchmark); not part of the default test run.

python -m pytest benchmarks/test_bench_topk.py --benchmark-only
python -m pytest benchmarks/test_bench_topk.py --benchmark-autosave   # then --benchmark-compare
"""

import numpy as np
import pytest

import mmrec_fast as mf

BACKENDS = [name for name, status in mf.available_backends().items() if status.available]
SHAPES = [(2000, 50_000, 64, 10), (2000, 50_000, 64, 100), (256, 200_000, 128, 100)]


@pytest.fixture(scope="module", params=SHAPES, ids=lambda s: "U{}-I{}-d{}-k{}".format(*s))
def problem(request):
    n_users, n_items, dim, k = request.param
    rng = np.random.default_rng(0)
    users = rng.standard_normal((n_users, dim), dtype=np.float32)
    items = rng.standard_normal((n_items, dim), dtype=np.float32)
    return users, items, k


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk(benchmark, problem, backend):
    users, items, k = problem
    index = mf.ItemIndex(items, backend=backend)
    index.topk(users[:8], k)  # warm-up (JIT)
    benchmark.extra_info["gflop"] = 2 * users.shape[0] * items.shape[0] * users.shape[1] / 1e9
    result = benchmark(index.topk, users, k)
    assert result.indices.shape == (users.shape[0], k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_topk_with_exclusion(benchmark, problem, backend):
    import scipy.sparse as sp

    users, items, k = problem
    rng = np.random.default_rng(1)
    exclude = sp.random(users.shape[0], items.shape[0], density=100 / items.shape[0], format="csr", random_state=rng)
    index = mf.ItemIndex(items, backend=backend)
    index.topk(users[:8], k)
    result = benchmark(index.topk, users, k, exclude=exclude)
    assert result.indices.shape == (users.shape[0], k)


def test_numpy_anchor(benchmark, problem):
    """Plain NumPy matmul + argpartition on the same problem, for the ratio."""
    from compare import Problem, numpy_anchor

    users, items, k = problem
    benchmark(numpy_anchor, Problem("anchor", users, items, k, None))
