"""Every SIMD path of the native kernel (AVX-512, AVX2, portable) against the reference and each other."""

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

native = pytest.importorskip("mmrec_fast._native", reason="native extension not built")
LEVELS = native.supported_simd_levels()


@pytest.mark.parametrize("level", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize(
    "shape", [(13, 97, 5, 7), (40, 600, 64, 30), (9, 300, 130, 300)], ids=lambda s: "U{}-I{}-d{}-k{}".format(*s)
)
def test_simd_level_matches_reference(monkeypatch, level, shape, rng):
    if level not in LEVELS:
        pytest.skip(f"{level} not supported by this CPU (supported: {LEVELS})")
    monkeypatch.setenv("MMREC_FAST_SIMD", level)
    n_users, n_items, dim, k = shape
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = random_exclusion(rng, n_users, n_items, 0.1, full_rows=[1])
    for blocks in [(None, None), (3, 5)]:
        result = mf.topk(users, items, k, exclude=exclude, backend="native", user_block=blocks[0], item_block=blocks[1])
        assert native.simd_level() == level
        assert_topk_matches(result, users, items, k, exclude=exclude)


def test_simd_levels_bitwise_identical(monkeypatch, rng):
    users, items = random_problem(rng, 50, 2000, 48)
    outputs = []
    for level in LEVELS:
        monkeypatch.setenv("MMREC_FAST_SIMD", level)
        outputs.append(mf.topk(users, items, 20, backend="native"))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other.indices, outputs[0].indices)
        np.testing.assert_array_equal(other.scores, outputs[0].scores)
        np.testing.assert_array_equal(other.log_normalizer, outputs[0].log_normalizer)


def test_bad_simd_override(monkeypatch):
    monkeypatch.setenv("MMREC_FAST_SIMD", "avx9000")
    with pytest.raises(ValueError, match="MMREC_FAST_SIMD"):
        mf.topk(np.ones((2, 2)), np.ones((3, 2)), 1, backend="native")


# ---- engine paths: streaming (no packed copy) vs packed items, item split, large k, exclusions -------

from mmrec_fast.backends.base import BlockConfig  # noqa: E402
from mmrec_fast.backends.native_backend import BACKEND  # noqa: E402


def _run(users, prepared, k, *, exclude=None, num_threads=None, item_block=None, user_block=None, inv_t=1.0):
    from mmrec_fast import validation

    n_users = users.shape[0]
    indptr, indices = validation.as_exclusion(exclude, n_users, prepared.n_items)
    out_i = np.empty((n_users, k), np.int64)
    out_s = np.empty((n_users, k), np.float32)
    out_l = np.empty(n_users, np.float64)
    config = BlockConfig(user_block=user_block, item_block=item_block, num_threads=num_threads)
    BACKEND.topk_into(users, prepared, k, inv_t, indptr, indices, config, out_i, out_s, out_l)
    return out_i, out_s, out_l


def _assert_same(x, y):
    for a, b in zip(x, y):
        np.testing.assert_array_equal(a, b)


def test_streaming_and_packed_items_identical(rng):
    users, items = random_problem(rng, 70, 3001, 37)
    exclude = random_exclusion(rng, 70, 3001, 0.05, full_rows=[3])
    streaming = BACKEND.prepare_items(items, BlockConfig(), persistent=False)
    packed = BACKEND.prepare_items(items, BlockConfig(), persistent=True)
    assert streaming.streaming and not packed.streaming
    assert streaming.nbytes <= items.nbytes  # no packed copy for a one-off query
    for k, item_block in [(10, None), (40, 48), (300, 16)]:
        a = _run(users, streaming, k, exclude=exclude, item_block=item_block)
        b = _run(users, packed, k, exclude=exclude, item_block=item_block)
        _assert_same(a, b)
    # The public one-off call uses the streaming path.
    result = mf.topk(users, items, 25, exclude=exclude, backend="native")
    assert_topk_matches(result, users, items, 25, exclude=exclude)
    np.testing.assert_array_equal(
        result.indices, mf.topk(users, mf.ItemIndex(items, backend="native"), 25, exclude=exclude).indices
    )


@pytest.mark.parametrize("level", ["avx512", "avx2", "scalar"])
def test_item_split_small_users(monkeypatch, level, rng):
    """Few users: items split into shards, merged exactly; same results for any thread count."""
    if level not in LEVELS:
        pytest.skip(f"{level} not supported by this CPU")
    monkeypatch.setenv("MMREC_FAST_SIMD", level)
    n_users, n_items, dim, k = 5, 16 * 256 * 8 + 13, 24, 8
    assert native.item_shards(n_users, n_items, k, 16) == 16
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = random_exclusion(rng, n_users, n_items, 0.2, full_rows=[2])
    outs = []
    for persistent in (False, True):
        prepared = BACKEND.prepare_items(items, BlockConfig(), persistent=persistent)
        for threads in (1, 2, 3):
            outs.append(_run(users, prepared, k, exclude=exclude, num_threads=threads, item_block=16))
    for other in outs[1:]:
        _assert_same(other, outs[0])
    result = mf.topk(users, items, k, exclude=exclude, backend="native", item_block=16)
    _assert_same((result.indices, result.scores, result.log_normalizer), outs[0])
    assert_topk_matches(result, users, items, k, exclude=exclude)
    assert np.isneginf(result.log_normalizer[2]) and np.all(result.indices[2] == -1)


def test_item_split_ties_and_k_beyond_shards(rng):
    """Integer scores (many exact ties across shard borders), k larger than an item block."""
    users = rng.integers(-2, 3, size=(3, 4)).astype(np.float32)
    items = rng.integers(-2, 3, size=(16 * 256 * 20, 4)).astype(np.float32)
    k = 20
    assert native.item_shards(3, items.shape[0], k, 16) == 16
    result = mf.topk(users, items, k, backend="native", item_block=16)
    assert_topk_matches(result, users, items, k, exact_ids=True)
    single = _run(users, BACKEND.prepare_items(items, BlockConfig()), k, item_block=16, num_threads=1)
    _assert_same((result.indices, result.scores, result.log_normalizer), single)


@pytest.mark.parametrize("k", [1, 100, 1000, 2500])
def test_large_k_many_prunes(rng, k):
    """Candidate buffers pruned many times (small item blocks, rising threshold), streaming items."""
    users, items = random_problem(rng, 12, 6000, 16)
    # Ascending scores along the item axis for some users make every block push the threshold up.
    items[:, 0] += np.linspace(0, 3, items.shape[0], dtype=np.float32)
    users[:4, 0] = np.abs(users[:4, 0]) + 1
    exclude = random_exclusion(rng, 12, 6000, 0.01)
    for item_block in (32, None):
        result = mf.topk(users, items, k, exclude=exclude, backend="native", item_block=item_block)
        assert_topk_matches(result, users, items, k, exclude=exclude)
    threads = [
        _run(
            users,
            BACKEND.prepare_items(items, BlockConfig(), persistent=False),
            k,
            exclude=exclude,
            num_threads=t,
            item_block=32,
        )
        for t in (1, 2)
    ]
    _assert_same(threads[0], threads[1])


def test_exclusion_with_item_split_matches_reference(rng):
    users, items = random_problem(rng, 7, 16 * 256 * 10 + 5, 12)
    n_items = items.shape[0]
    assert native.item_shards(7, n_items, 60, 16) == 2 and native.item_shards(7, n_items, 10, 16) == 16
    exclude = random_exclusion(rng, 7, n_items, 0.02)
    # Exclude everything in one shard's range for one user, and the best items of another.
    exclude = exclude.tolil()
    exclude[0, 100:900] = 1.0
    best = np.argsort(-(items @ users[1]))[:50]
    exclude[1, best] = 1.0
    exclude = exclude.tocsr()
    for k in (10, 60):
        result = mf.topk(users, items, k, exclude=exclude, backend="native", item_block=16, temperature=0.3)
        assert_topk_matches(result, users, items, k, exclude=exclude, temperature=0.3)
        assert not np.isin(result.indices[1], best).any()
        single = _run(
            users,
            BACKEND.prepare_items(items, BlockConfig()),
            k,
            exclude=exclude,
            item_block=16,
            num_threads=1,
            inv_t=1 / 0.3,
        )
        _assert_same((result.indices, result.scores, result.log_normalizer), single)


@pytest.mark.parametrize("factor", [1, 2, 3])
@pytest.mark.parametrize("data", ["gaussian", "ascending", "integer-ties", "one-value"])
def test_streaming_prune_keeps_exact_results(rng, factor, data):
    """The in-stream prune keeps a histogram bucket's worth above k (or falls back to the exact select):
    every buffer size from k + 16 up, on data that prunes constantly, ties everywhere, or one value."""
    n_users, n_items, dim, k = 6, 20_000, 8, 300
    if data == "integer-ties":
        users = rng.integers(-2, 3, size=(n_users, dim)).astype(np.float32)
        items = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
    elif data == "one-value":
        users = np.ones((n_users, dim), np.float32)
        items = np.ones((n_items, dim), np.float32)
    else:
        users, items = random_problem(rng, n_users, n_items, dim)
        if data == "ascending":  # every block raises the threshold: a prune every few blocks
            items[:, 0] += np.linspace(0, 4, n_items, dtype=np.float32)
            users[:, 0] = np.abs(users[:, 0]) + 1
    exclude = random_exclusion(rng, n_users, n_items, 0.02)
    prepared = BACKEND.prepare_items(items, BlockConfig(), persistent=True)
    config = BlockConfig(item_block=64, candidate_factor=factor)
    assert config.buffer_capacity(k) == max(factor * k, k + 16)
    from mmrec_fast import validation

    indptr, indices = validation.as_exclusion(exclude, n_users, n_items)
    out = (np.empty((n_users, k), np.int64), np.empty((n_users, k), np.float32), np.empty(n_users))
    BACKEND.topk_into(users, prepared, k, 1.0, indptr, indices, config, *out)
    result = mf.TopK(*out, 1.0)
    assert_topk_matches(result, users, items, k, exclude=exclude, exact_ids=data in ("integer-ties", "one-value"))


@pytest.mark.parametrize("data", ["planted", "heavy-exclusion", "integer-ties"])
def test_threshold_guess_keeps_exact_results(rng, data):
    """Large k: each user's threshold starts at a guess from a strided item sample. "planted": the
    sampled items of half the users score far above the rest, so no k items beat their guess and they
    are scored again; "heavy-exclusion": 80% of the items excluded (the guess skips them);
    "integer-ties": few distinct scores. Every user's result equals the reference, and the outputs are
    bitwise those of a run without guess (small k: no guess; the log-normaliser and the best scores
    do not depend on k)."""
    n_items, dim, k, small_k = 16 * 64 * 20, 8, 256, 8
    n_users = 200  # enough users for one item shard
    assert native.threshold_guess_rank(n_users, n_items, k, 512) > 0
    assert native.threshold_guess_rank(n_users, n_items, small_k, 512) == 0
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = random_exclusion(rng, n_users, n_items, 0.02, full_rows=[150])
    if data == "planted":
        sampled = (np.arange(20)[:, None] * 64 + 32) * 16 + np.arange(16)[None, :]  # the guess's sample
        items[sampled.ravel(), 0] += 6.0
        users[: n_users // 2, 0] = np.abs(users[: n_users // 2, 0]) + 2.0
    elif data == "heavy-exclusion":
        exclude = random_exclusion(rng, n_users, n_items, 0.8, full_rows=[150])
    else:
        users = rng.integers(-1, 2, size=(n_users, dim)).astype(np.float32)
        items = rng.integers(-1, 2, size=(n_items, dim)).astype(np.float32)
    for persistent in (False, True):
        prepared = BACKEND.prepare_items(items, BlockConfig(), persistent=persistent)
        for threads in (1, 2):
            big = _run(users, prepared, k, exclude=exclude, num_threads=threads)
            result = mf.TopK(*big, 1.0)
            assert_topk_matches(result, users, items, k, exclude=exclude, exact_ids=data == "integer-ties")
            small = _run(users, prepared, small_k, exclude=exclude, num_threads=threads)
            np.testing.assert_array_equal(big[2], small[2])  # bitwise: the same exp-sum
            np.testing.assert_array_equal(big[0][:, :small_k], small[0])
            np.testing.assert_array_equal(big[1][:, :small_k], small[1])
