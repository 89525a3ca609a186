"""``precision="fp32" | "int8" | "auto"`` through the public API (mf.topk, ItemIndex, merge_topk): int8 ids and
scores bitwise equal to fp32 under every filter combination, the normaliser within its reported bound of
the float32 one and of the float64 reference, errors naming ``precision``, and the "auto" rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast import _search
from mmrec_fast.reference import topk_reference
from mmrec_fast.testing import random_problem

_native = pytest.importorskip("mmrec_fast._native", reason="native extension not built")
int8 = pytest.importorskip("mmrec_fast.int8")

_FORCE = {"avx512vnni": "avx512", "avx2": "avx2", "scalar": "scalar"}


def _csr(rows, n_items):
    return sp.csr_matrix(
        (np.ones(sum(len(r) for r in rows)), np.concatenate([np.asarray(r, int) for r in rows] or [[]]),
         np.concatenate([[0], np.cumsum([len(r) for r in rows])])),
        shape=(len(rows), n_items),
    )  # fmt: skip


def _random_rows(rng, n_users, n_items, density, full_row=None):
    rows = [np.flatnonzero(rng.random(n_items) < density) for _ in range(n_users)]
    if full_row is not None:
        rows[full_row] = np.arange(n_items)
    return rows


def assert_same(fast, exact, *, normalizer=True):
    """int8 result vs the float32 one: ids and scores bitwise, normaliser within the int8 bound."""
    np.testing.assert_array_equal(fast.indices, exact.indices)
    np.testing.assert_array_equal(fast.scores.view(np.uint32), exact.scores.view(np.uint32))
    if not normalizer:
        assert fast.log_normalizer is None and fast.log_normalizer_bound is None and fast.probs is None
        return
    assert exact.log_normalizer_bound is None
    bound = fast.log_normalizer_bound
    assert bound is not None and bound.shape == (len(fast),) and np.all(bound >= 0) and np.all(np.isfinite(bound))
    np.testing.assert_array_equal(np.isneginf(fast.log_normalizer), np.isneginf(exact.log_normalizer))
    live = np.isfinite(exact.log_normalizer)
    err = np.abs(fast.log_normalizer[live] - exact.log_normalizer[live])
    assert np.all(err <= bound[live]), f"normaliser off by {err.max():.3g}"
    np.testing.assert_array_equal(bound[~live], 0.0)


def assert_within_reference(result, users, items, k, temperature, **filters):
    """The int8 normaliser is within its bound of the float64 reference too (ids: same multiset of scores)."""
    _, ref_scores, ref_lse = topk_reference(users, items, k, temperature=temperature, **filters)
    live = np.isfinite(ref_lse)
    np.testing.assert_array_equal(np.isneginf(result.log_normalizer), ~live)
    err = np.abs(result.log_normalizer[live] - ref_lse[live])
    assert np.all(err <= result.log_normalizer_bound[live]), f"off the reference by {err.max():.3g}"
    np.testing.assert_array_equal(np.isfinite(result.scores), np.isfinite(ref_scores))


FILTERS = ["none", "exclude", "allow", "ban", "allow_small", "all", "candidates", "all_filtered_row"]


@pytest.mark.parametrize("normalizer", [True, False], ids=["lse", "topk_only"])
@pytest.mark.parametrize("which", FILTERS)
def test_int8_equals_fp32_with_filters(rng, which, normalizer):
    n_users, n_items, dim, k = 23, 5000, 24, 15
    users, items = random_problem(rng, n_users, n_items, dim)
    opts = {}
    ref = {}
    if which in ("exclude", "all", "all_filtered_row"):
        rows = _random_rows(rng, n_users, n_items, 0.05, full_row=3 if which == "all_filtered_row" else None)
        opts["exclude"] = _csr(rows, n_items)
        ref["excl_indptr"], ref["excl_indices"] = opts["exclude"].indptr, opts["exclude"].indices
    if which in ("allow", "all"):
        opts["allow"] = rng.random(n_items) < 0.7  # scanned with the item mask
    if which == "allow_small":
        opts["allow"] = rng.random(n_items) < 0.05  # a compact one-off catalogue
    if which in ("ban", "all"):
        opts["ban"] = rng.choice(n_items, 400, replace=False)
    if which == "candidates":
        opts["candidates"] = [rng.choice(n_items, rng.integers(0, 40), replace=False) for _ in range(n_users)]
    temperature = float(rng.choice([0.05, 1.0, 30.0]))
    fp32 = mf.topk(users, items, k, temperature=temperature, normalizer=normalizer, backend="native", **opts)
    fast = mf.topk(
        users, items, k, temperature=temperature, normalizer=normalizer, backend="native", precision="int8", **opts
    )
    if which == "candidates":  # the float32 candidate path: the exact normaliser, no bound
        np.testing.assert_array_equal(fast.indices, fp32.indices)
        np.testing.assert_array_equal(fast.scores, fp32.scores)
        assert fast.log_normalizer_bound is None
        return
    assert_same(fast, fp32, normalizer=normalizer)
    if normalizer:
        if "allow" in opts:
            ref["allow"] = opts["allow"]
        if "ban" in opts:
            ref["ban"] = np.isin(np.arange(n_items), opts["ban"])
        assert_within_reference(fast, users, items, k, temperature, **ref)
    if which == "all_filtered_row":
        assert np.all(fast.indices[3] == -1) and np.all(np.isneginf(fast.scores[3]))
        if normalizer:
            assert np.isneginf(fast.log_normalizer[3]) and fast.log_normalizer_bound[3] == 0


@pytest.mark.parametrize(
    "n_users,n_items,dim,k",
    [(1, 3000, 64, 10), (1, 7, 5, 20), (6, 40, 3, 40), (4, 1, 1, 3), (3, 600, 17, 600), (2, 900, 8, 1)],
    ids=["one_user", "k_gt_I", "k_eq_I", "one_item", "k_eq_I_big", "k1"],
)
def test_int8_shapes(rng, n_users, n_items, dim, k):
    users, items = random_problem(rng, n_users, n_items, dim)
    fast = mf.topk(users, items, k, precision="int8")
    assert fast.indices.shape == (n_users, k)
    assert_same(fast, mf.topk(users, items, k, backend="native"))
    assert_within_reference(fast, users, items, k, 1.0)


def test_int8_ties_and_extremes(rng):
    """Duplicated rows (ties go to the lower id), zero rows, large dynamic range, outlier coordinates."""
    users, items = random_problem(rng, 9, 3000, 32)
    items[1000:1500] = items[:500]  # exact ties
    items[2000:2100] = 0.0
    items[2100:2200] *= 1e3
    items[2200:2300, 0] = 50.0
    users[2] = 0.0  # every score 0: all ties
    users[3] *= 1e-20
    for temperature in (1e-3, 1.0, 1e4):
        fast = mf.topk(users, items, 50, precision="int8", temperature=temperature)
        assert_same(fast, mf.topk(users, items, 50, backend="native", temperature=temperature))
    np.testing.assert_array_equal(fast.indices[2], np.arange(50))


def test_int8_fallback_users_honour_mask_and_normalizer(rng):
    """Scores all within the certificates of each other: no pruning, the float32 fallback answers those
    users (with the ban mask and without the normaliser as asked)."""
    n_items = 40_000
    items = np.tile(random_problem(rng, 1, 1, 4)[1], (n_items, 1))
    items[:, 3] += (rng.integers(-4, 5, n_items) * 1e-7).astype(np.float32)
    users = random_problem(rng, 128, 1, 4)[0]
    assert _native.item_shards(128, n_items, 3, int8.DEFAULT_ITEM_BLOCK) == 1  # one shard holds all 40k
    ban = rng.choice(n_items, 2000, replace=False)
    for normalizer in (True, False):
        fast = mf.topk(users, items, 3, ban=ban, precision="int8", normalizer=normalizer)
        assert int8.last_stats()["fallback_users"] >= 100
        exact = mf.topk(users, items, 3, ban=ban, backend="native", normalizer=normalizer)
        assert_same(fast, exact, normalizer=normalizer)
    assert not np.isin(fast.indices, ban).any()


def test_int8_chunks_and_progress(rng, monkeypatch):
    """Users streamed in several chunks (exclusion rows sliced per chunk) give the one-call result."""
    monkeypatch.setattr(_search, "_CHUNK_MACS", 1)
    monkeypatch.setattr(_search, "_MIN_CHUNK_USERS", 7)
    users, items = random_problem(rng, 30, 800, 16)
    excl = _csr(_random_rows(rng, 30, 800, 0.1, full_row=20), 800)
    fast = mf.topk(users, items, 12, exclude=excl, precision="int8", progress=True)
    assert_same(fast, mf.topk(users, items, 12, exclude=excl, backend="native"))


@pytest.mark.parametrize("bad", ["bf16", "INT8", "", 8, ("int8",)])
def test_bad_precision(rng, bad):
    users, items = random_problem(rng, 2, 50, 4)
    with pytest.raises(ValueError, match="precision"):
        mf.topk(users, items, 3, precision=bad)
    with pytest.raises(ValueError, match="precision"):
        mf.topk(users, mf.ItemIndex(items), 3, precision=bad)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_int8_needs_native_backend(rng, backend):
    users, items = random_problem(rng, 3, 200, 8)
    if not mf.available_backends()[backend].available:
        pytest.skip(f"{backend} backend not available")
    with pytest.raises(ValueError, match="precision.*native"):
        mf.topk(users, items, 3, backend=backend, precision="int8")
    auto = mf.topk(users, items, 3, backend=backend, precision="auto")  # "auto" falls back to float32
    assert auto.log_normalizer_bound is None
    np.testing.assert_array_equal(auto.indices, mf.topk(users, items, 3, backend=backend).indices)


def test_resolve_precision_rule():
    assert int8.resolve_precision("fp32", "numpy", on_gpu=True, n_users=1, k=1, ready=True) == "fp32"
    with pytest.raises(ValueError, match="precision.*GPU"):
        int8.resolve_precision("int8", "native", on_gpu=True, n_users=1, k=1, ready=True)
    with pytest.raises(ValueError, match="precision.*'torch'"):
        int8.resolve_precision("int8", "torch", on_gpu=False, n_users=1, k=1, ready=True)
    assert int8.resolve_precision("auto", "cuda", on_gpu=True, n_users=1, k=1, ready=True) == "fp32"
    assert int8.resolve_precision("int8", "native", on_gpu=False, n_users=10**6, k=10**4, ready=False) == "int8"


@pytest.mark.parametrize(
    "level,n_users,k,ready,expected",
    [
        ("avx512vnni", 10_000, 100, True, True),
        ("avx512vnni", 1, 10, True, True),
        ("avx512vnni", 1, 10, False, False),  # one-off: quantising the catalogue costs more than one query
        ("avx512vnni", int8.AUTO_ONE_OFF_MIN_USERS, 10, False, True),
        ("avx512vnni", 100, int8.AUTO_MAX_K + 1, True, False),
        ("avx2", 1, 10, True, True),
        ("avx2", 1, int8.AUTO_MAX_K, True, True),
        ("avx2", int8.AUTO_MAX_USERS, int8.AUTO_MAX_SLOTS // int8.AUTO_MAX_USERS, True, True),
        ("avx2", int8.AUTO_MAX_USERS, int8.AUTO_MAX_SLOTS // int8.AUTO_MAX_USERS + 1, True, False),
        ("avx2", int8.AUTO_MAX_USERS + 1, 1, True, False),
        ("avx2", 1, int8.AUTO_MAX_K + 1, True, False),
        ("avx2", 1, 10, False, False),
        ("scalar", 1, 10, True, False),
    ],
)
def test_auto_rule(level, n_users, k, ready, expected):
    assert int8.auto_selects_int8(level, n_users, k, ready) is expected


@pytest.mark.parametrize("level", [pytest.param(x, id=x) for x in _native.int8_supported_levels()])
def test_auto_follows_forced_level(rng, monkeypatch, level):
    """Forcing the int8 level through MMREC_FAST_SIMD changes what "auto" picks, never the ids or scores."""
    monkeypatch.setenv("MMREC_FAST_SIMD", _FORCE[level])
    assert int8.int8_level() == level
    users, items = random_problem(rng, 40, 2000, 16)
    index = mf.ItemIndex(items, backend="native")
    fp32 = mf.topk(users, index, 10)
    for n_users, ready in ((1, True), (40, True), (1, False)):
        auto = mf.topk(users[:n_users], index if ready else items, 10, precision="auto")
        picked = auto.log_normalizer_bound is not None
        assert picked is int8.auto_selects_int8(level, n_users, 10, ready)
        np.testing.assert_array_equal(auto.indices, fp32.indices[:n_users])
        np.testing.assert_array_equal(auto.scores, fp32.scores[:n_users])


def test_merge_combines_bounds(rng):
    users, items = random_problem(rng, 12, 3000, 16)
    parts = []
    for lo, hi, precision in ((0, 1000, "int8"), (1000, 2200, "fp32"), (2200, 3000, "int8")):
        part = mf.topk(users, items[lo:hi], 8, precision=precision, temperature=0.5)
        parts.append(mf.TopK(np.where(part.indices >= 0, part.indices + lo, -1), part.scores, part.log_normalizer,
                             0.5, part.log_normalizer_bound))  # fmt: skip
    merged = mf.merge_topk(parts)
    whole = mf.topk(users, items, 8, backend="native", temperature=0.5)
    np.testing.assert_array_equal(merged.indices, whole.indices)
    bound = merged.log_normalizer_bound
    assert np.all(bound >= np.maximum(parts[0].log_normalizer_bound, parts[2].log_normalizer_bound))
    assert_within_reference(merged, users, items, 8, 0.5)
    # Exact parts stay exact; a part without a normaliser leaves none to bound.
    exact = [mf.topk(users, items[:100], 3), mf.topk(users, items[100:200], 3)]
    exact[1] = mf.TopK(exact[1].indices + 100, exact[1].scores, exact[1].log_normalizer)
    assert mf.merge_topk(exact).log_normalizer_bound is None
    no_lse = mf.TopK(parts[1].indices, parts[1].scores, None, 0.5)
    assert mf.merge_topk([parts[0], no_lse]).log_normalizer_bound is None


def test_merged_bound_rule():
    lse = np.array([0.0, -np.inf, 1e6])
    bound = mf.merge.merged_bound([np.array([0.1, 0.0, 0.2]), None, np.array([0.3, 0.0, 0.1])], lse)
    assert bound[1] == 0 and 0.3 < bound[0] < 0.3 + 1e-12 and 0.2 < bound[2] < 0.2 + 1e-8
    assert mf.merge.merged_bound([None, None], lse) is None


def test_index_int8_only_memory_and_results(rng):
    users, items = random_problem(rng, 5, 4096, 64)
    plain = mf.ItemIndex(items, backend="native")
    small = mf.ItemIndex(items, backend="native", precision="int8")
    assert small.precision == "int8" and plain.precision == "fp32"
    mem, ref_mem = small.memory_usage(), plain.memory_usage()
    assert mem["float32_packed"] == 0 and ref_mem["int8"] == 0 and ref_mem["float32_packed"] > 0
    assert 0 < mem["int8"] <= 0.3 * ref_mem["float32_packed"]
    exact = plain.topk(users, 7)
    assert_same(small.topk(users, 7), exact)  # the index's own precision
    assert_same(mf.topk(users, small, 7), exact)  # mf.topk on an index takes its precision too
    fp32 = small.topk(users, 7, precision="fp32")  # float32 on an int8 index: blocks packed on the fly
    np.testing.assert_array_equal(fp32.scores, exact.scores)
    np.testing.assert_array_equal(fp32.log_normalizer, exact.log_normalizer)
    assert fp32.log_normalizer_bound is None


def test_index_int8_form_built_lazily_and_kept(rng):
    users, items = random_problem(rng, 3, 1000, 16)
    index = mf.ItemIndex(items, backend="native")
    assert index.memory_usage()["int8"] == 0
    first = index.topk(users, 4, precision="int8")
    form = index.snapshot().main.cache["int8"]
    assert index.memory_usage()["int8"] == form.nbytes > 0
    second = index.topk(users, 4, precision="int8")
    assert index.snapshot().main.cache["int8"] is form  # quantised once
    np.testing.assert_array_equal(first.log_normalizer, second.log_normalizer)


def test_live_index_int8_matches_fp32(rng):
    """External ids, tombstones and a delta segment: per-segment int8 passes merged, the bound combined."""
    users, items = random_problem(rng, 9, 2000, 16)
    ids = rng.choice(10**6, 2000, replace=False)
    indexes = [mf.ItemIndex(items, ids, backend="native", precision=p, compact_fraction=0.5) for p in ("fp32", "int8")]
    new_ids = np.setdiff1d(rng.choice(10**6, 300, replace=False), ids)
    new_rows = random_problem(rng, 1, new_ids.shape[0], 16)[1]
    for index in indexes:
        index.add(new_ids, new_rows)
        index.remove(ids[:50])
        index.update(ids[100:120], new_rows[:20] * 2)
        assert index.snapshot().delta is not None
    exclude = [rng.choice(ids, 30) for _ in range(9)]
    for opts in ({}, {"exclude": exclude, "ban": new_ids[:10]}, {"allow": np.concatenate([ids[:500], new_ids])}):
        exact, fast = (index.topk(users, 25, temperature=0.3, **opts) for index in indexes)
        assert_same(fast, exact)
    with pytest.raises(ValueError, match="precision"):
        indexes[0].topk(users, 3, precision="int4")


@pytest.mark.parametrize("bad", ["bf16", 8])
def test_index_bad_precision(rng, bad):
    items = random_problem(rng, 1, 50, 4)[1]
    with pytest.raises(ValueError, match="precision"):
        mf.ItemIndex(items, precision=bad)
    with pytest.raises(ValueError, match="precision.*native"):
        mf.ItemIndex(items, backend="numpy", precision="int8")
    assert mf.ItemIndex(items, backend="numpy", precision="auto").topk(items[:2], 3).log_normalizer_bound is None
