"""score (dense) and score_pairs against the reference."""

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast.reference import scores_reference, topk_reference
from mmrec_fast.testing import BACKENDS, random_exclusion, random_problem


def test_score_dense(rng):
    users, items = random_problem(rng, 30, 70, 12, dtype=np.float64)
    got = mf.score(np.asfortranarray(users), items)
    assert got.dtype == np.float32 and got.shape == (30, 70)
    np.testing.assert_allclose(got, scores_reference(users, items), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(mf.score(users, mf.ItemIndex(items)), got)


@pytest.mark.parametrize("backend", BACKENDS)
def test_score_pairs(backend, rng):
    users, items = random_problem(rng, 25, 300, 10)
    exclude = random_exclusion(rng, 25, 300, 0.1)
    user_ids = rng.integers(0, 25, size=200)
    item_ids = rng.integers(0, 300, size=200)
    got = mf.score_pairs(users, items, user_ids, item_ids, exclude=exclude, temperature=0.7, backend=backend)
    dense = scores_reference(users, items)
    indptr, indices = mf.validation.as_exclusion(exclude, 25, 300)
    _, _, lse = topk_reference(users, items, 1, excl_indptr=indptr, excl_indices=indices, temperature=0.7)
    expected_logp = dense[user_ids, item_ids] / 0.7 - lse[user_ids]
    excluded = np.asarray(exclude[user_ids, item_ids]).ravel() != 0
    assert excluded.any() and (~excluded).any()
    np.testing.assert_allclose(got.scores, dense[user_ids, item_ids], rtol=1e-5, atol=1e-6)
    assert np.all(np.isneginf(got.log_probs[excluded])) and np.all(got.probs[excluded] == 0)
    np.testing.assert_allclose(got.log_probs[~excluded], expected_logp[~excluded], atol=1e-5)


def test_score_pairs_equal_topk_probs(rng):
    users, items = random_problem(rng, 10, 200, 8)
    result = mf.topk(users, items, 5)
    rows = np.repeat(np.arange(10), 5)
    pairs = mf.score_pairs(users, items, rows, result.indices.ravel())
    np.testing.assert_allclose(pairs.probs, result.probs.ravel(), rtol=1e-5)


def test_score_pairs_empty():
    got = mf.score_pairs(np.ones((2, 2)), np.ones((3, 2)), [], [])
    assert got.scores.shape == (0,) and got.probs.shape == (0,)
