"""The certified int8 first pass (mmrec_fast.int8): ids and scores bitwise equal to the native float32
engine's, on random and adversarial data, at every int8 kernel level this CPU runs; the normaliser within
its reported bound; the self-check able to fail."""

from __future__ import annotations

import numpy as np
import pytest

import mmrec_fast as mf

_native = pytest.importorskip("mmrec_fast._native", reason="native extension not built")
int8 = pytest.importorskip("mmrec_fast.int8")

# int8 level -> the MMREC_FAST_SIMD value that selects it (the variable caps both the float32 and int8 paths).
_FORCE = {"avx512vnni": "avx512", "avx2": "avx2", "scalar": "scalar"}
LEVELS = [pytest.param(level, id=level) for level in _native.int8_supported_levels()]


@pytest.fixture(params=LEVELS)
def level(request, monkeypatch):
    monkeypatch.setenv("MMREC_FAST_SIMD", _FORCE[request.param])
    assert int8.int8_level() == request.param
    return request.param


def _csr(rows, n_users):
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r) for r in rows])
    indices = np.concatenate([np.asarray(sorted(r), dtype=np.int64) for r in rows]) if rows else np.zeros(0, np.int64)
    return indptr, indices.astype(np.int64)


def _random_exclusion(rng, n_users, n_items, density, full_row=None):
    rows = []
    for u in range(n_users):
        pick = np.flatnonzero(rng.random(n_items) < density)
        rows.append(np.arange(n_items) if u == full_row else pick)
    return _csr(rows, n_users)


def check_exact(users, items, k, *, inv_t=1.0, excl=None, mask=None, threads=None, normalizer=True):
    """topk_int8 against the native float32 engine: ids and scores bitwise, the normaliser within its bound."""
    n_users = users.shape[0]
    indptr, indices = excl if excl is not None else _csr([[]] * n_users, n_users)
    prepared = int8.prepare_int8(items)
    idx, sc, lse, bound = int8.topk_int8(
        users, prepared, k, inv_t, indptr, indices, item_mask=mask, normalizer=normalizer, num_threads=threads
    )
    # The float32 engine sees the mask as extra exclusions.
    rows = [indices[indptr[u] : indptr[u + 1]] for u in range(n_users)]
    if mask is not None:
        banned = np.flatnonzero(mask == 0)
        rows = [np.union1d(r, banned) for r in rows]
    ref = mf.topk(users, items, k, exclude=_csr(rows, n_users), temperature=1.0 / inv_t, backend="native")
    np.testing.assert_array_equal(idx, ref.indices)
    np.testing.assert_array_equal(sc.view(np.uint32), ref.scores.view(np.uint32))
    if not normalizer:
        assert lse is None and bound is None
        return int8.last_stats()
    ref_lse = ref.log_normalizer
    assert np.all(np.isfinite(bound)) and np.all(bound >= 0)
    np.testing.assert_array_equal(np.isneginf(lse), np.isneginf(ref_lse))
    finite = np.isfinite(ref_lse)
    err = np.abs(lse[finite] - ref_lse[finite])
    assert np.all(err <= bound[finite]), f"lse off by {err.max():.3g} > bound {bound[finite].min():.3g}"
    return int8.last_stats()


def _unit(rng, shape, scale=1.0):
    return (rng.standard_normal(shape) * scale / np.sqrt(shape[1])).astype(np.float32)


@pytest.mark.parametrize(
    "n_users,n_items,dim,k",
    [(37, 2000, 64, 10), (5, 3001, 37, 50), (1, 500, 1, 3), (9, 100, 5, 200), (20, 257, 16, 257), (1, 20000, 64, 10)],
)
def test_random_matches_float32(level, rng, n_users, n_items, dim, k):
    users, items = _unit(rng, (n_users, dim)), _unit(rng, (n_items, dim))
    stats = check_exact(users, items, k, inv_t=rng.uniform(0.5, 20.0))
    assert stats["fallback_users"] == 0


def test_item_split_path(level, rng):
    # Few users and many items: the engine cuts the catalogue into shards (merged per user).
    n_users, n_items, k = 3, 20000, 10
    assert _native.item_shards(n_users, n_items, k, int8.DEFAULT_ITEM_BLOCK) > 1
    users, items = _unit(rng, (n_users, 32)), _unit(rng, (n_items, 32))
    excl = _random_exclusion(rng, n_users, n_items, 0.05)
    check_exact(users, items, k, excl=excl)


def _adversarial(kind, rng, n_users, n_items, dim):
    users, items = _unit(rng, (n_users, dim)), _unit(rng, (n_items, dim))
    if kind == "dynamic_range":  # one huge coordinate per row, the rest tiny
        items *= np.float32(1e-3)
        items[:, 0] = rng.standard_normal(n_items).astype(np.float32) * 1e3
        users[:, 1:] *= np.float32(1e4)
    elif kind == "outliers":
        hit = rng.random(items.shape) < 0.02
        items[hit] *= np.float32(300)
    elif kind == "constant_rows":  # every item the same row: all scores tie, ids by index
        items[:] = items[0]
        users[0] = 0.0
    elif kind == "zero_rows":
        items[rng.random(n_items) < 0.3] = 0.0
        users[::2] = 0.0
        users[1::4] *= -1
    elif kind == "heavy_ties":  # a few distinct small-integer rows: exact, massively tied scores
        pool = rng.integers(-3, 4, size=(4, dim)).astype(np.float32)
        items = pool[rng.integers(0, 4, n_items)]
        users = rng.integers(-2, 3, size=(n_users, dim)).astype(np.float32)
    elif kind == "near_kth":  # scores a few ulps apart around the k-th place
        base = items[0].copy()
        items[:] = base
        items[:, -1] += (rng.integers(-8, 9, n_items) * np.spacing(np.float32(1)) * np.abs(base[-1])).astype(np.float32)
    elif kind == "tiny":  # subnormal products
        users *= np.float32(1e-20)
        items *= np.float32(1e-20)
    elif kind == "huge":
        users *= np.float32(1e15)
        items *= np.float32(1e5)
    return users, items


@pytest.mark.parametrize(
    "kind", ["dynamic_range", "outliers", "constant_rows", "zero_rows", "heavy_ties", "near_kth", "tiny", "huge"]
)
def test_adversarial_matches_float32(level, rng, kind):
    n_users, n_items, dim, k = 13, 1500, 19, 25
    users, items = _adversarial(kind, rng, n_users, n_items, dim)
    excl = _random_exclusion(rng, n_users, n_items, 0.1, full_row=3)
    mask = (rng.random(n_items) < 0.9).astype(np.uint8)
    inv_t = 1e-20 if kind == "huge" else 1.0
    check_exact(users, items, k, inv_t=inv_t, excl=excl, mask=mask)
    check_exact(users, items, n_items + 5, inv_t=inv_t, excl=excl, normalizer=False)  # k > I


def test_extreme_temperatures(rng):
    users, items = _unit(rng, (6, 24)), _unit(rng, (800, 24))
    for inv_t in (1e-30, 1e-3, 1e3, 1e6):
        check_exact(users, items, 7, inv_t=inv_t)


def test_masks_and_empty_rows(rng):
    users, items = _unit(rng, (4, 8)), _unit(rng, (300, 8))
    check_exact(users, items, 5, mask=np.zeros(300, dtype=np.uint8))  # nothing eligible: padding, -inf
    idx, sc, lse, bound = int8.topk_int8(users, int8.prepare_int8(items), 5, item_mask=np.zeros(300, bool))
    assert np.all(idx == -1) and np.all(np.isneginf(sc)) and np.all(np.isneginf(lse)) and np.all(bound == 0)
    mask = np.zeros(300, dtype=np.uint8)
    mask[[0, 7, 299]] = 1
    check_exact(users, items, 5, mask=mask)


def test_fallback_users_match(rng):
    # 40k items whose scores all lie within the certificate of each other: no pruning is possible, the
    # buffer outgrows its limit and those users go to the float32 engine.
    n_items = 40000
    items = np.tile(_unit(rng, (1, 4)), (n_items, 1))
    items[:, 3] += (rng.integers(-4, 5, n_items) * 1e-7).astype(np.float32)
    users = _unit(rng, (128, 4))
    assert _native.item_shards(128, n_items, 3, int8.DEFAULT_ITEM_BLOCK) == 1  # one shard holds all 40k
    stats = check_exact(users, items, 3)
    assert stats["fallback_users"] >= 120
    check_exact(users, items, 3, mask=(rng.random(n_items) < 0.5).astype(np.uint8), normalizer=False)


def test_thread_count_independent(rng):
    users, items = _unit(rng, (70, 32)), _unit(rng, (3000, 32))
    prepared = int8.prepare_int8(items)
    one = int8.topk_int8(users, prepared, 20, num_threads=1)
    two = int8.topk_int8(users, prepared, 20, num_threads=2)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


def test_survivors_are_few_on_random_data(rng):
    users, items = _unit(rng, (64, 64)), _unit(rng, (20000, 64))
    check_exact(users, items, 10)
    stats = int8.last_stats()
    assert stats["survivors"] < 0.05 * stats["pairs"]


def test_self_check():
    for level in _native.int8_supported_levels():
        assert _native.int8_self_check(level)
    assert not _native.int8_self_check("broken")  # the check can fail
    assert _native.int8_self_check_failures() == []


def test_prepared_memory():
    rng = np.random.default_rng(0)
    for dim in (64, 256):
        items = rng.standard_normal((4096, dim)).astype(np.float32)
        prepared = int8.prepare_int8(items)
        assert prepared.nbytes <= 0.3 * _native.packed_size(4096, dim) * 4
        assert not prepared.items.flags.writeable and np.shares_memory(prepared.items, items)


def test_bad_input():
    rng = np.random.default_rng(1)
    items = rng.standard_normal((50, 4)).astype(np.float32)
    prepared = int8.prepare_int8(items)
    users = rng.standard_normal((2, 4)).astype(np.float32)
    with pytest.raises(TypeError, match="items"):
        int8.prepare_int8(items.astype(np.float64))
    with pytest.raises(ValueError, match="items"):
        int8.prepare_int8(np.full((3, 4), np.nan, dtype=np.float32))
    with pytest.raises(TypeError, match="prepared"):
        int8.topk_int8(users, items, 3)
    with pytest.raises(ValueError, match="users"):
        int8.topk_int8(users[:, :3].copy(), prepared, 3)
    with pytest.raises(ValueError, match="k"):
        int8.topk_int8(users, prepared, 0)
    with pytest.raises(ValueError, match="inv_temperature"):
        int8.topk_int8(users, prepared, 3, -1.0)
    with pytest.raises(ValueError, match="excl_indices"):
        int8.topk_int8(users, prepared, 3, 1.0, np.array([0, 1, 1]), np.array([50]))
    with pytest.raises(ValueError, match="item_mask"):
        int8.topk_int8(users, prepared, 3, item_mask=np.ones(49, dtype=np.uint8))
    with pytest.raises(TypeError, match="item_mask"):
        int8.topk_int8(users, prepared, 3, item_mask=np.ones(50, dtype=np.int32))
