"""Cold-start protocols: the splits, the vector overrides, fold-in, the random floor and the landing report."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.metrics import evaluate
from mmrec_fast.models import EASE, ContentIALS, ContentProfile, MostPop
from mmrec_fast.pipeline.coldstart import (
    VectorOverride,
    cold_item_landing,
    cold_item_split,
    cold_item_vectors,
    cold_user_split,
    fold_in_users,
    random_ndcg,
)


def ratings_matrix(rng, n_users=40, n_items=30, density=0.3):
    """Random 1-5 ratings; every user and item has at least one (adversarial: some rows tiny)."""
    dense = (rng.random((n_users, n_items)) < density) * rng.integers(1, 6, size=(n_users, n_items))
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = rng.integers(1, 6, n_users)
    dense[rng.integers(0, n_users, n_items), np.arange(n_items)] = rng.integers(1, 6, n_items)
    return sp.csr_matrix(dense.astype(np.float64))


def as_set(matrix):
    coo = sp.coo_matrix(matrix)
    return set(zip(coo.row.tolist(), coo.col.tolist()))


# ------------------------------------------------------------------------------------------ new items
@pytest.mark.parametrize("relevance", [None, 4.0])
def test_cold_item_split_partitions_the_log(rng, relevance):
    r = ratings_matrix(rng)
    s = cold_item_split(r, fraction=0.2, seed=3, relevance=relevance)
    n_items = r.shape[1]
    assert len(s.cold_items) == round(0.2 * n_items)
    assert np.all(np.diff(s.cold_items) > 0)
    cold = set(s.cold_items.tolist())
    train, pos = as_set(s.train), as_set(s.positives)
    assert not any(i in cold for _, i in train)  # cold columns are empty in train
    assert all(i in cold for _, i in pos)
    everything = as_set(r)
    held = {(u, i) for u, i in everything if i in cold}
    assert train == everything - held
    coo = r.tocoo()
    wanted = {
        (u, i) for u, i, v in zip(coo.row, coo.col, coo.data) if i in cold and (relevance is None or v >= relevance)
    }
    assert pos == wanted
    assert np.all(s.train.data == 1) and np.all(s.positives.data == 1)
    # Among-cold ranking: the evaluated users' candidates are exactly the cold items.
    users = np.flatnonzero(np.diff(s.positives.indptr))
    for u in users:
        candidates = set(range(n_items)) - set(s.exclude_among_cold[u].indices.tolist())
        assert candidates == cold
    assert as_set(s.exclude_catalogue) == train


def test_cold_item_split_is_seeded(rng):
    r = ratings_matrix(rng, 50, 60)
    a, b = cold_item_split(r, seed=1), cold_item_split(r, seed=1)
    assert np.array_equal(a.cold_items, b.cold_items) and (a.train != b.train).nnz == 0
    assert not np.array_equal(a.cold_items, cold_item_split(r, seed=2).cold_items)


@pytest.mark.parametrize(
    "bad, error", [({"fraction": 0}, ValueError), ({"fraction": 1.0}, ValueError), ({"fraction": "0.2"}, ValueError)]
)
def test_cold_item_split_rejects_bad_arguments(rng, bad, error):
    with pytest.raises(error, match="fraction"):
        cold_item_split(ratings_matrix(rng), **bad)


def test_splits_reject_non_sparse_and_empty():
    with pytest.raises(TypeError, match="interactions"):
        cold_item_split(np.ones((3, 3)))
    with pytest.raises(ValueError, match="interactions"):
        cold_user_split(sp.csr_matrix((3, 3)))


# ------------------------------------------------------------------------------------------ new users
@pytest.mark.parametrize("relevance", [None, 4.0])
def test_cold_user_split_partitions_each_cold_user(rng, relevance):
    r = ratings_matrix(rng, 60, 25, density=0.4)
    s = cold_user_split(r, fraction=0.1, history_fraction=0.5, seed=5, relevance=relevance)
    assert len(s.cold_users) == round(0.1 * 60)
    counts = np.diff(r.indptr)
    for u in range(60):
        row = set(r[u].indices.tolist())
        hist, targets = set(s.history[u].indices.tolist()), set(s.positives[u].indices.tolist())
        if u in s.cold_users:
            assert s.train[u].nnz == 0
            assert len(hist) == max(1, min(round(0.5 * counts[u]), counts[u] - 1))
            assert hist <= row and targets <= row - hist
            want = {i for i in row - hist if relevance is None or r[u, i] >= relevance}
            assert targets == want
            unseen = set(np.flatnonzero(np.diff(s.train.tocsc().indptr) == 0).tolist())
            assert set(s.exclude[u].indices.tolist()) == hist | unseen
        else:
            assert set(s.train[u].indices.tolist()) == row and not hist and not targets
    assert as_set(s.retrain) == as_set(s.train) | as_set(s.history)


def test_cold_user_split_is_seeded(rng):
    r = ratings_matrix(rng, 80, 20)
    a, b = cold_user_split(r, seed=9), cold_user_split(r, seed=9)
    assert np.array_equal(a.cold_users, b.cold_users) and (a.history != b.history).nnz == 0
    c = cold_user_split(r, seed=10)
    assert not (np.array_equal(a.cold_users, c.cold_users) and (a.history != c.history).nnz == 0)


# ------------------------------------------------------------------------------------------ overrides
def test_vector_override_replaces_only_the_given_rows(rng):
    model = MostPop(6, 5).fit(sp.csr_matrix(rng.integers(0, 2, (6, 5)).astype(float)))
    users, items = model.user_vectors(), model.item_vectors()
    new = rng.normal(size=(2, users.shape[1])).astype(np.float32)
    wrapped = VectorOverride(model, user_rows=[1, 4], user_vectors=new)
    assert np.array_equal(wrapped.user_vectors()[[1, 4]], new)
    keep = [0, 2, 3, 5]
    assert np.array_equal(wrapped.user_vectors()[keep], users[keep])
    assert np.array_equal(wrapped.item_vectors(), items)
    assert wrapped.blocks() == model.blocks() and wrapped.kind == model.kind
    with pytest.raises(ValueError, match="user_vectors"):
        VectorOverride(model, user_rows=[1], user_vectors=new)
    with pytest.raises(ValueError, match="item_rows"):
        VectorOverride(model, item_rows=[9], item_vectors=np.zeros((1, items.shape[1])))
    with pytest.raises(ValueError, match="together"):
        VectorOverride(model, user_rows=[1])
    with pytest.raises(ValueError, match="NaN"):
        VectorOverride(model, user_rows=[1], user_vectors=np.full((1, users.shape[1]), np.nan))


def test_cold_item_vectors_use_the_content_path_only(rng):
    r = ratings_matrix(rng, 30, 20, density=0.4)
    s = cold_item_split(r, seed=0)
    features = rng.normal(size=(20, 6)).astype(np.float32)
    model = ContentIALS(30, 20, features, dim=4, epochs=2, seed=0).fit(s.train)
    got = cold_item_vectors(model, features, s.cold_items)
    assert np.array_equal(got, model.item_vectors_from(features[s.cold_items]))
    profile = ContentProfile(features).fit(s.train)
    assert np.array_equal(cold_item_vectors(profile, features, s.cold_items), features[s.cold_items])
    with pytest.raises(TypeError, match="EASE"):
        cold_item_vectors(EASE(30, 20).fit(s.train), features, s.cold_items)


def test_content_profile_fold_in_equals_its_retrain(rng):
    r = ratings_matrix(rng, 50, 30)
    s = cold_user_split(r, seed=2)
    features = rng.normal(size=(30, 5)).astype(np.float32)
    warm = ContentProfile(features).fit(s.train)
    folded = fold_in_users(warm, s.history, s.cold_users)
    retrained = ContentProfile(features).fit(s.retrain).user_vectors()[s.cold_users]
    np.testing.assert_allclose(folded, retrained, rtol=1e-6, atol=1e-7)


def test_ease_fold_in_equals_its_retrain_scores_given_the_same_items(rng):
    # EASE's user vector is the user's own row: folding in from the history is exactly what a
    # retrain would hand the engine for that user (item side fixed).
    r = ratings_matrix(rng, 40, 25)
    s = cold_user_split(r, seed=4)
    warm = EASE(40, 25, reg=10.0).fit(s.train)
    folded = fold_in_users(warm, s.history, s.cold_users)
    assert np.array_equal(folded, s.history[s.cold_users].toarray().astype(np.float32))


def test_fold_in_users_refuses_models_without_a_path(rng):
    r = ratings_matrix(rng, 10, 8)
    wrapped = VectorOverride(MostPop(10, 8).fit(r))  # no fold_in of its own
    with pytest.raises(TypeError, match="VectorOverride cannot fold in"):
        fold_in_users(wrapped, r, [0])


# ------------------------------------------------------------------------------------------ random floor
def _exact_random_ndcg(positives, exclude, n_items, k):
    """Average NDCG@k over every permutation of each user's candidates (tiny problems only)."""
    values = []
    for u in np.flatnonzero(np.diff(positives.indptr)):
        candidates = [i for i in range(n_items) if exclude is None or exclude[u, i] == 0]
        perms = np.array(list(itertools.permutations(candidates)), dtype=np.int64).reshape(-1, len(candidates))
        ranked = np.full((len(perms), k), -1, dtype=np.int64)
        ranked[:, : min(k, perms.shape[1])] = perms[:, :k]
        rows = sp.vstack([positives[u]] * len(perms)).tocsr()
        values.append(evaluate(ranked, rows, ks=(k,), metrics=("ndcg",))[f"ndcg@{k}"])
    return float(np.mean(values))


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_random_ndcg_is_the_exact_expectation(rng, k):
    n_items = 6
    positives = (rng.random((3, n_items)) < 0.4).astype(float)
    exclude = (rng.random((3, n_items)) < 0.3).astype(float)
    positives[0, 1] = exclude[0, 1] = 1.0  # an excluded positive counts in the ideal DCG, as in the evaluator
    positives[0, 2], exclude[0, 2] = 1.0, 0.0
    positives, exclude = sp.csr_matrix(positives), sp.csr_matrix(exclude)
    got = random_ndcg(positives, exclude, n_items, k)
    assert got == pytest.approx(_exact_random_ndcg(positives, exclude, n_items, k), rel=1e-12)
    assert random_ndcg(positives, None, n_items, k) == pytest.approx(
        _exact_random_ndcg(positives, None, n_items, k), rel=1e-12
    )


def test_random_ndcg_rejects_bad_input():
    with pytest.raises(ValueError, match="k"):
        random_ndcg(sp.csr_matrix(np.eye(3)), None, 3, 0)
    with pytest.raises(ValueError, match="positives"):
        random_ndcg(sp.csr_matrix((3, 3)), None, 3, 2)


# ------------------------------------------------------------------------------------------ landing
def test_cold_item_landing_matches_a_brute_force_ranking(rng):
    r = ratings_matrix(rng, 30, 25, density=0.35)
    s = cold_item_split(r, seed=7, relevance=3.0)
    features = rng.normal(size=(25, 4)).astype(np.float32)
    features[3] = features[4]  # adversarial: tied item vectors (ties go to the lower id)
    model = ContentProfile(features).fit(s.train)
    got = cold_item_landing(model, s, k=5)
    users = np.flatnonzero(np.diff(s.positives.indptr))
    scores = model.user_vectors()[users].astype(np.float64) @ model.item_vectors().T.astype(np.float64)
    percentiles, in_top, cold_slots = [], [], []
    for row, u in enumerate(users):
        seen = set(s.exclude_catalogue[u].indices.tolist())
        candidates = [i for i in range(25) if i not in seen]
        order = sorted(candidates, key=lambda i: (-np.float32(scores[row, i]), i))
        cold_slots.extend(i in set(s.cold_items.tolist()) for i in order[:5])
        cold_slots.extend([False] * (5 - len(order[:5])))
        for i in s.positives[u].indices:
            rank = order.index(i)
            percentiles.append(100.0 * rank / max(len(candidates) - 1, 1))
            in_top.append(rank < 5)
    assert got["n_users"] == len(users)
    assert got["cold_share@5"] == pytest.approx(np.mean(cold_slots))
    assert got["in_top@5"] == pytest.approx(np.mean(in_top))
    assert got["median_percentile"] == pytest.approx(np.median(percentiles))
    assert got["cold_catalogue_share"] == pytest.approx(len(s.cold_items) / 25)


def test_cold_items_evaluate_through_the_one_evaluator(rng):
    # The among-cold protocol through evaluate_model equals a direct ranking of the cold items.
    r = ratings_matrix(rng, 30, 20, density=0.4)
    s = cold_item_split(r, seed=1)
    features = rng.normal(size=(20, 6)).astype(np.float32)
    model = ContentProfile(features).fit(s.train)
    got = evaluate_model(model, s.positives, exclude=s.exclude_among_cold, ks=(3,), metrics=("ndcg",))
    users = np.flatnonzero(np.diff(s.positives.indptr))
    scores = model.user_vectors()[users] @ features[s.cold_items].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :3]
    ranked = s.cold_items[order]
    want = evaluate(ranked, s.positives[users], ks=(3,), metrics=("ndcg",))
    assert got["ndcg@3"] == pytest.approx(want["ndcg@3"], rel=1e-6)
