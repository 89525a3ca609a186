"""Code paths of the Numba kernel that the backend-generic tests may not reach: item sharding for few
users (exact merge), user counts that are not a multiple of the micro-kernel's group, item blocks that
are not a multiple of the 32-item panel, and independence from the thread count."""

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

nb = pytest.importorskip("mmrec_fast.backends.numba_backend", reason="numba unavailable")
from mmrec_fast.backends import numba_kernels as nk  # noqa: E402


def test_shard_count_ignores_threads():
    assert nb.item_shards(16, 1_000_000, 1024, 100) > 1
    assert nb.item_shards(10_000, 1_000_000, 1024, 100) == 1
    assert nb.item_shards(16, 1000, 1024, 100) == 1  # a single item block cannot be split
    assert nb.item_shards(16, 1_000_000, 1024, 10**7) == 1  # shard buffers would be too large


@pytest.mark.parametrize(
    "shape", [(5, 20_000, 16, 10), (13, 9_001, 7, 300), (30, 40_000, 33, 1)], ids=lambda s: "U{}-I{}-d{}-k{}".format(*s)
)
@pytest.mark.parametrize("item_block", [None, 100, 37])
def test_sharded_matches_reference(shape, item_block, rng):
    n_users, n_items, dim, k = shape
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = random_exclusion(rng, n_users, n_items, 0.05, full_rows=[1])
    block = item_block or nb.default_item_block(n_items, dim)
    assert nb.item_shards(n_users, n_items, block, k) > 1
    result = mf.topk(users, items, k, exclude=exclude, backend="numba", item_block=item_block)
    assert_topk_matches(result, users, items, k, exclude=exclude)


def test_sharded_ties_exact(rng):
    users = rng.integers(-2, 3, size=(6, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(5000, 3)).astype(np.float32)
    exclude = random_exclusion(rng, 6, 5000, 0.1)
    assert nb.item_shards(6, 5000, 64, 700) > 1
    for k in (1, 50, 700):
        result = mf.topk(users, items, k, exclude=exclude, backend="numba", item_block=64)
        assert_topk_matches(result, users, items, k, exclude=exclude, exact_ids=True)


@pytest.mark.parametrize("n_users", [1, nk.GROUP - 1, nk.GROUP + 1, 3 * nk.GROUP + 5])
@pytest.mark.parametrize("user_block", [None, 5, nk.GROUP, 2 * nk.GROUP + 1])
def test_group_padding(n_users, user_block, rng):
    users, items = random_problem(rng, n_users, 1500, 19)
    exclude = random_exclusion(rng, n_users, 1500, 0.2)
    result = mf.topk(users, items, 9, exclude=exclude, backend="numba", user_block=user_block, item_block=161)
    assert_topk_matches(result, users, items, 9, exclude=exclude)


def test_pack_layout(rng):
    items = rng.standard_normal((70, 5)).astype(np.float32)
    packed = nk.pack_items(items)
    assert packed.shape == (3, 5, nk.PANEL) and packed.ctypes.data % 64 == 0
    flat = packed.transpose(0, 2, 1).reshape(-1, 5)
    np.testing.assert_array_equal(flat[:70], items)
    assert not flat[70:].any()


@pytest.mark.parametrize("n_users", [7, 300])  # sharded and not
def test_thread_count_and_blocking_independent(n_users, rng):
    users, items = random_problem(rng, n_users, 30_000, 24)
    exclude = random_exclusion(rng, n_users, 30_000, 0.01)
    runs = [
        mf.topk(users, items, 40, exclude=exclude, backend="numba", num_threads=t, user_block=ub)
        for t, ub in [(1, None), (2, None), (2, 7), (1, 100)]
    ]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.indices, runs[0].indices)
        np.testing.assert_array_equal(other.scores, runs[0].scores)
        np.testing.assert_array_equal(other.log_normalizer, runs[0].log_normalizer)
