"""Filters (allow / ban / candidates, composed with exclude) and normalizer=False on every backend.

Every result is checked against the float64 reference through an equivalent per-user exclusion (the
complement of each user's eligible set), and the reference's own filter arguments are checked against
that same complement, so one reference defines eligibility.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast import _search, validation
from mmrec_fast.reference import topk_reference
from mmrec_fast.testing import BACKENDS, assert_topk_matches, random_exclusion, random_problem


def _eligible(n_users, n_items, *, allow=None, ban=None, candidates=None, exclude=None):
    """Dense (U, I) boolean eligibility, written from the definition (DESIGN.md 2b)."""
    ok = np.ones((n_users, n_items), dtype=bool)
    if allow is not None:
        ok &= validation.as_item_filter(allow, "allow", n_items)[None, :]
    if ban is not None:
        ok &= ~validation.as_item_filter(ban, "ban", n_items)[None, :]
    if candidates is not None:
        indptr, indices = validation.as_exclusion(candidates, n_users, n_items, name="candidates")
        in_cand = np.zeros_like(ok)
        for u in range(n_users):
            in_cand[u, indices[indptr[u] : indptr[u + 1]]] = True
        ok &= in_cand
    if exclude is not None:
        indptr, indices = validation.as_exclusion(exclude, n_users, n_items)
        for u in range(n_users):
            ok[u, indices[indptr[u] : indptr[u + 1]]] = False
    return ok


def _check(result, users, items, k, *, temperature=1.0, exact_ids=False, **filters):
    """The result equals the reference with every ineligible item excluded."""
    ok = _eligible(users.shape[0], items.shape[0], **filters)
    complement = sp.csr_matrix(~ok)
    assert_topk_matches(result, users, items, k, exclude=complement, temperature=temperature, exact_ids=exact_ids)


def _random_filters(rng, n_users, n_items):
    allow = rng.choice(n_items, size=int(0.7 * n_items), replace=True)  # ids, duplicates, any order
    ban = rng.random(n_items) < 0.15  # a mask
    exclude = random_exclusion(rng, n_users, n_items, density=0.1, full_rows=(1,))
    cand = [rng.choice(n_items, size=rng.integers(0, 60), replace=False) for _ in range(n_users)]
    cand[2] = np.zeros(0, dtype=np.int64)  # no candidates at all
    return allow, ban, exclude, cand


CASES = {
    "ban": ("ban",),
    "allow": ("allow",),
    "allow+ban+exclude": ("allow", "ban", "exclude"),
    "candidates": ("candidates",),
    "candidates+all": ("allow", "ban", "exclude", "candidates"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_filters_match_the_reference(rng, backend, case):
    users, items = random_problem(rng, 13, 700, 8)
    allow, ban, exclude, cand = _random_filters(rng, 13, 700)
    every = {"allow": allow, "ban": ban, "exclude": exclude, "candidates": cand}
    filters = {name: every[name] for name in CASES[case]}
    got = mf.topk(users, items, 20, temperature=0.7, backend=backend, item_block=128, **filters)
    _check(got, users, items, 20, temperature=0.7, **filters)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_allow_list_compact_catalogue(rng, backend, monkeypatch):
    """The compact-catalogue path (gathered eligible rows, ids mapped back) on any catalogue size."""
    monkeypatch.setattr(_search, "_COMPACT_MIN_ITEMS", 0)
    monkeypatch.setattr(_search, "COMPACT_FRACTION_FEW_USERS", 0.25)
    users, items = random_problem(rng, 9, 900, 6)
    allow = rng.choice(900, size=40, replace=False)
    exclude = random_exclusion(rng, 9, 900, density=0.05).tolil()
    exclude[3, allow] = 1.0  # one user has every allowed item excluded
    exclude = exclude.tocsr()
    got = mf.topk(users, items, 25, allow=allow, ban=allow[:5], exclude=exclude, backend=backend)
    _check(got, users, items, 25, allow=allow, ban=allow[:5], exclude=exclude)
    assert np.all(got.indices[3] == -1) and np.isneginf(got.log_normalizer[3])


@pytest.mark.parametrize("backend", BACKENDS)
def test_masked_blocks_shards_and_large_k(rng, backend):
    """Whole item blocks without an eligible item (skipped), item shards (few users), and the native
    threshold guess (k >= 256, many users) with a mask that removes many of its sample's items."""
    users, items = random_problem(rng, 3, 20000, 4)
    ban = np.zeros(20000, dtype=bool)
    ban[1000:9000] = True
    exclude = [[999, 9000, 9001], [], list(range(2000, 2100))]  # entries inside the skipped blocks too
    got = mf.topk(users, items, 10, ban=ban, exclude=exclude, backend=backend, item_block=512)
    _check(got, users, items, 10, ban=ban, exclude=exclude)
    users, items = random_problem(rng, 130, 30000, 4)
    ban = rng.random(30000) < 0.4
    ban[5000:12000] = True
    got = mf.topk(users, items, 300, ban=ban, backend=backend)
    _check(got, users, items, 300, ban=ban)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ties_across_filtered_items_go_to_the_lowest_eligible_id(rng, backend):
    # Small integers: exact float32 scores, massive ties; banned items sit among the tied ones.
    users = rng.integers(-2, 3, size=(7, 4)).astype(np.float32)
    items = rng.integers(-2, 3, size=(300, 4)).astype(np.float32)
    ban = rng.random(300) < 0.3
    allow = np.flatnonzero(rng.random(300) < 0.8)
    got = mf.topk(users, items, 40, allow=allow, ban=ban, backend=backend, item_block=64)
    _check(got, users, items, 40, allow=allow, ban=ban, exact_ids=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_edge_cases(rng, backend):
    users, items = random_problem(rng, 5, 200, 4)
    # Everything banned: padding and a -inf normaliser for everyone.
    got = mf.topk(users, items, 3, ban=np.ones(200, dtype=bool), backend=backend)
    assert np.all(got.indices == -1) and np.all(np.isneginf(got.log_normalizer)) and np.all(got.probs == 0)
    # One allowed item: it is everyone's top with probability 1; k beyond it pads.
    got = mf.topk(users, items, 4, allow=[17], backend=backend)
    assert np.all(got.indices[:, 0] == 17) and np.all(got.indices[:, 1:] == -1)
    np.testing.assert_allclose(got.probs[:, 0], 1.0, rtol=1e-6)
    # Candidates empty for some users, overlapping the exclusions for others, k > eligible.
    cand = [[], [3, 4, 5], [3], list(range(200)), [199, 0]]
    exclude = [[], [4], [3], [], [0, 1]]
    got = mf.topk(users, items, 6, candidates=cand, exclude=exclude, ban=[5], backend=backend)
    _check(got, users, items, 6, candidates=cand, exclude=exclude, ban=[5])
    assert np.all(got.indices[0] == -1) and np.isneginf(got.log_normalizer[0])
    assert got.indices[1, 0] == 3 and np.all(got.indices[1, 1:] == -1)
    assert np.all(got.indices[2] == -1) and got.indices[4, 0] == 199


@pytest.mark.parametrize("temperature", [1e-4, 1e4])
@pytest.mark.parametrize("backend", BACKENDS)
def test_extreme_temperatures(rng, backend, temperature):
    users, items = random_problem(rng, 6, 500, 8)
    allow, ban, exclude, cand = _random_filters(rng, 6, 500)
    for filters in ({"allow": allow, "ban": ban, "exclude": exclude}, {"candidates": cand, "ban": ban}):
        got = mf.topk(users, items, 10, temperature=temperature, backend=backend, **filters)
        _check(got, users, items, 10, temperature=temperature, **filters)


@pytest.mark.parametrize("backend", BACKENDS)
def test_ids_and_masks_give_identical_results(rng, backend):
    users, items = random_problem(rng, 8, 400, 8)
    ids = rng.choice(400, size=150, replace=False)
    mask = np.zeros(400, dtype=bool)
    mask[ids] = True
    by_ids = mf.topk(users, items, 12, allow=ids, ban=ids[:20], backend=backend)
    by_mask = mf.topk(users, items, 12, allow=mask, ban=np.isin(np.arange(400), ids[:20]), backend=backend)
    np.testing.assert_array_equal(by_ids.indices, by_mask.indices)
    np.testing.assert_array_equal(by_ids.scores, by_mask.scores)
    np.testing.assert_array_equal(by_ids.log_normalizer, by_mask.log_normalizer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_normalizer_false_gives_the_same_lists(rng, backend):
    users, items = random_problem(rng, 11, 800, 8)
    allow, ban, exclude, cand = _random_filters(rng, 11, 800)
    for filters in ({}, {"ban": ban, "exclude": exclude}, {"allow": allow}, {"candidates": cand}):
        full = mf.topk(users, items, 15, backend=backend, **filters)
        fast = mf.topk(users, items, 15, backend=backend, normalizer=False, **filters)
        assert fast.log_normalizer is None and fast.probs is None
        np.testing.assert_array_equal(np.asarray(fast.indices), np.asarray(full.indices))
        np.testing.assert_array_equal(np.asarray(fast.scores), np.asarray(full.scores))


def test_reference_filters_equal_the_complement_exclusion(rng):
    users, items = random_problem(rng, 9, 300, 5)
    allow, ban, exclude, cand = _random_filters(rng, 9, 300)
    ok = _eligible(9, 300, allow=allow, ban=ban, candidates=cand, exclude=exclude)
    indptr, indices = validation.as_exclusion(sp.csr_matrix(~ok), 9, 300)
    expected = topk_reference(users, items, 30, excl_indptr=indptr, excl_indices=indices, temperature=0.5)
    ex_indptr, ex_indices = validation.as_exclusion(exclude, 9, 300)
    got = topk_reference(
        users,
        items,
        30,
        excl_indptr=ex_indptr,
        excl_indices=ex_indices,
        temperature=0.5,
        allow=validation.as_item_filter(allow, "allow", 300),
        ban=ban,
        candidates=validation.as_exclusion(cand, 9, 300, name="candidates"),
    )
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_merge_without_normaliser(rng):
    users, items = random_problem(rng, 4, 100, 6)
    a = mf.topk(users, items[:60], 5, normalizer=False)
    b = mf.topk(users, items[60:], 5)
    b = mf.TopK(np.where(b.indices >= 0, b.indices + 60, -1), b.scores, b.log_normalizer)
    merged = mf.merge_topk([a, b])
    assert merged.log_normalizer is None and merged.probs is None
    np.testing.assert_array_equal(merged.indices, mf.topk(users, items, 5).indices)


def test_score_pairs_agree_with_topk_under_filters(rng):
    users, items = random_problem(rng, 6, 300, 8)
    allow, ban, exclude, cand = _random_filters(rng, 6, 300)
    filters = {"allow": allow, "ban": ban, "exclude": exclude, "candidates": cand}
    top = mf.topk(users, items, 5, **filters)
    rows, cols = np.nonzero(top.indices >= 0)
    pairs = mf.score_pairs(users, items, rows, top.indices[rows, cols], **filters)
    np.testing.assert_allclose(pairs.probs, top.probs[rows, cols], rtol=1e-5)
    # Pairs outside the eligible set have probability 0.
    ok = _eligible(6, 300, **filters)
    u = np.repeat(np.arange(6), 300)
    j = np.tile(np.arange(300), 6)
    every = mf.score_pairs(users, items, u, j, **filters)
    assert np.all(every.probs[~ok.reshape(-1)] == 0) and np.all(every.probs[ok.reshape(-1)] > 0)
    np.testing.assert_allclose(np.bincount(u, weights=every.probs)[ok.any(axis=1)], 1.0, rtol=1e-6)


def test_item_index_search_takes_filters(rng):
    users, items = random_problem(rng, 5, 5000, 8)
    index = mf.ItemIndex(items)
    allow = rng.choice(5000, size=50, replace=False)  # sparse: the compact catalogue
    for kwargs in ({"allow": allow}, {"ban": allow}, {"candidates": [allow] * 5}):
        got = _search.search(index, users, 10, None, 1.0, None, None, False, **kwargs)
        _check(got, users, items, 10, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"allow": np.ones(99, dtype=bool)}, "allow: a boolean mask must have length"),
        ({"ban": [0, 100]}, r"ban: id 100 out of range \[0, 100\)"),
        ({"allow": [-1]}, "allow: id -1 out of range"),
        ({"allow": np.array([1.0, np.nan])}, "allow: expected integer ids"),
        ({"ban": np.array(["a"])}, "ban: expected integer ids"),
        ({"allow": np.zeros((2, 3), dtype=int)}, "allow: expected a 1-D array"),
        ({"candidates": [[1], [2]]}, r"candidates: a list must hold one id sequence per user \(U = 3\)"),
        ({"candidates": sp.csr_matrix((3, 99))}, "candidates: sparse matrix has shape"),
        ({"candidates": [[1], [200], []]}, "candidates: id 200 out of range"),
        ({"normalizer": "yes"}, "normalizer: expected True or False"),
    ],
)
def test_bad_filter_input(rng, kwargs, match):
    users, items = random_problem(rng, 3, 100, 4)
    with pytest.raises(ValueError, match=match):
        mf.topk(users, items, 5, **kwargs)
