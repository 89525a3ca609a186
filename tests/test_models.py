"""Models: training learns, is seeded, splits scores into exact blocks, and saves/loads bit for bit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast.data import IdMap
from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.models import BPRMF, ContentProfile, HybridMF, TrainConfig, load_model, save_model
from mmrec_fast.recommend import recommend
from mmrec_fast.reference import topk_reference

FAST = dict(dim=8, content_dim=4, epochs=6, batch_size=64, lr=0.03, progress=False)


def planted(rng, n_users=60, n_items=90, groups=3, density=0.35):
    """Users of group g interact mostly with items of group g: a structure any working model finds."""
    ug = np.arange(n_users) % groups
    ig = np.arange(n_items) % groups
    prob = np.where(ug[:, None] == ig[None, :], density, 0.02)
    dense = rng.random((n_users, n_items)) < prob
    return sp.csr_matrix(dense.astype(np.float32)), ug, ig


def holdout(matrix, rng, fraction=0.2):
    coo = matrix.tocoo()
    held = rng.random(coo.nnz) < fraction
    make = lambda m: sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=matrix.shape)
    return make(~held), make(held)


#: Per trainer: plain SGD steps once per triple and needs more epochs than Adam over mini-batches.
LEARN = {"torch": dict(epochs=10, batch_size=128, reg=0.05), "native": dict(epochs=40, lr=0.05, reg=0.01)}


@pytest.mark.parametrize("trainer", ["native", "torch"])
def test_bpr_learns_planted_structure(rng, trainer):
    data, _, item_group = planted(rng, n_users=200, n_items=120, density=0.3)
    train, test = holdout(data, rng)
    config = TrainConfig(**{**FAST, **LEARN[trainer], "trainer": trainer})
    learned = evaluate_model(BPRMF(*data.shape, config).fit(train), test, exclude=train, ks=(5,))
    untrained = evaluate_model(BPRMF(*data.shape, config), test, exclude=train, ks=(5,))
    # Near-oracle: profiles over the true item groups (one-hot), which BPR has to discover.
    one_hot = np.eye(3, dtype=np.float32)[item_group]
    oracle = evaluate_model(ContentProfile(one_hot).fit(train), test, exclude=train, ks=(5,))
    # Within a group held-out items are indistinguishable, so the signal is AUC (group found or not).
    assert untrained["auc"] < 0.65
    assert learned["auc"] > oracle["auc"] - 0.05
    assert learned["auc"] > untrained["auc"] + 0.15


@pytest.mark.parametrize("loss", ["bpr", "softmax"])
def test_training_is_seeded(rng, loss):
    train, _, _ = planted(rng)
    config = TrainConfig(**{**FAST, "loss": loss, "n_negatives": 32})
    a = BPRMF(*train.shape, config).fit(train)
    b = BPRMF(*train.shape, config).fit(train)
    assert np.array_equal(a.user_vectors(), b.user_vectors())
    assert np.array_equal(a.item_vectors(), b.item_vectors())
    c = BPRMF(*train.shape, TrainConfig(**{**FAST, "loss": loss, "n_negatives": 32, "seed": 1})).fit(train)
    assert not np.array_equal(a.item_vectors(), c.item_vectors())


def test_full_softmax_when_negatives_cover_catalogue(rng):
    train, _, _ = planted(rng, n_items=40)
    model = BPRMF(*train.shape, TrainConfig(**{**FAST, "loss": "softmax", "n_negatives": 40})).fit(train)
    assert np.isfinite(model.history[-1]["loss"]) and model.history[-1]["loss"] < np.log(40)


def test_early_stopping_restores_best_epoch(rng):
    data, _, _ = planted(rng)
    train, val = holdout(data, rng)
    config = TrainConfig(**{**FAST, "epochs": 40, "patience": 2, "lr": 0.05})
    model = BPRMF(*data.shape, config).fit(train, validation=val)
    best = [e for e in model.history if e.get("best")]
    assert len(best) == 1
    assert best[0]["val_ndcg@10"] == max(e["val_ndcg@10"] for e in model.history if "val_ndcg@10" in e)
    # The restored weights are the best epoch's: re-measuring gives its validation score.
    from mmrec_fast.models.training import validation_ndcg

    assert validation_ndcg(model.net, train, val) == pytest.approx(best[0]["val_ndcg@10"], abs=1e-9)


def test_hybrid_blocks_split_scores_exactly(rng):
    train, _, _ = planted(rng)
    features = rng.standard_normal((train.shape[1], 10)).astype(np.float32)
    features[5, 6:] = 0.0  # item 5 has no "image": its image block contributes exactly 0
    model = HybridMF(
        *train.shape, features, TrainConfig(**FAST), feature_blocks={"text": (0, 6), "image": (6, 10)}
    ).fit(train)
    assert [b.name for b in model.blocks()] == ["id", "text", "image", "bias"]
    users, items = model.user_vectors(), model.item_vectors()
    image = next(b for b in model.blocks() if b.name == "image").columns
    assert np.all(items[5, image] == 0.0)
    recs = recommend(model, None, 7, exclude=train)
    total = sum(c.astype(np.float64) for c in recs.contributions.values())
    listed = recs.items >= 0
    np.testing.assert_allclose(total[listed], recs.scores[listed], rtol=1e-5, atol=1e-5)
    ref_ids, ref_scores, ref_lse = topk_reference(users, items, 7, excl_indptr=train.indptr, excl_indices=train.indices)
    ref_probs = np.exp(ref_scores - ref_lse[:, None])
    np.testing.assert_allclose(recs.probs, ref_probs, rtol=1e-4, atol=1e-7)


def test_content_profile_is_weighted_mean(rng):
    train, _, _ = planted(rng)
    features = rng.standard_normal((train.shape[1], 5)).astype(np.float32)
    train = train.tolil()
    train[3, :] = 0
    train = train.tocsr()
    train.eliminate_zeros()
    model = ContentProfile(features).fit(train)
    dense = train.toarray()
    expected = dense @ features.astype(np.float64) / np.maximum(dense.sum(1, keepdims=True), 1)
    np.testing.assert_allclose(model.user_vectors(), expected, rtol=1e-5, atol=1e-6)
    assert np.all(model.user_vectors()[3] == 0)  # no history: zero profile, documented


@pytest.mark.parametrize("kind", ["bpr", "hybrid", "content"])
def test_save_load_round_trip_is_bit_identical(tmp_path, rng, kind):
    train, _, _ = planted(rng)
    features = rng.standard_normal((train.shape[1], 6)).astype(np.float32)
    if kind == "bpr":
        model = BPRMF(*train.shape, TrainConfig(**FAST)).fit(train)
    elif kind == "hybrid":
        model = HybridMF(*train.shape, features, TrainConfig(**FAST)).fit(train)
    else:
        model = ContentProfile(features).fit(train)
    users = IdMap(np.arange(100, 100 + train.shape[0]), name="user")
    items = IdMap(np.array([f"m{i:03d}" for i in range(train.shape[1])], dtype=object), name="item")
    path = save_model(model, tmp_path / "m", user_map=users, item_map=items, metadata={"note": "x"})
    loaded = load_model(path)
    assert loaded.model.kind == kind
    assert np.array_equal(loaded.model.user_vectors(), model.user_vectors())
    assert np.array_equal(loaded.model.item_vectors(), model.item_vectors())
    assert loaded.user_map == users and loaded.item_map == items
    assert loaded.metadata == {"note": "x"}
    assert [b.name for b in loaded.model.blocks()] == [b.name for b in model.blocks()]
    # Saving again over the same directory replaces it as a whole.
    save_model(model, path, overwrite=True)
    assert load_model(path).user_map is None
    assert json.loads((path / "model.json").read_text())["kind"] == kind


def test_bad_arguments_are_named(tmp_path, rng):
    train, _, _ = planted(rng)
    with pytest.raises(ValueError, match="TrainConfig.dim"):
        TrainConfig(dim=0)
    with pytest.raises(ValueError, match="TrainConfig.loss"):
        TrainConfig(loss="hinge")
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_dict({"epochz": 3})
    with pytest.raises(ValueError, match="train has shape"):
        BPRMF(5, 5, TrainConfig(**FAST)).fit(train)
    with pytest.raises(ValueError, match="train must be a scipy sparse"):
        BPRMF(*train.shape, TrainConfig(**FAST)).fit(train.toarray())
    bad = rng.standard_normal((train.shape[1], 4)).astype(np.float32)
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="features contain NaN"):
        HybridMF(*train.shape, bad, TrainConfig(**FAST))
    with pytest.raises(ValueError, match="features must have shape"):
        HybridMF(*train.shape, bad[:3], TrainConfig(**FAST))
    with pytest.raises(ValueError, match="tile columns"):
        ContentProfile(np.ones((4, 4)), feature_blocks={"a": (0, 2), "b": (3, 4)})
    with pytest.raises(ValueError, match="not a saved model"):
        load_model(tmp_path)
    with pytest.raises(ValueError, match="users: codes out of range"):
        recommend(BPRMF(*train.shape, TrainConfig(**FAST)), [0, 10_000], 3)


def test_fused_items_feed_the_hybrid_with_their_modality_blocks(rng):
    from mmrec_fast.encoders import fuse

    train, _, _ = planted(rng)
    n_items = train.shape[1]
    text = rng.standard_normal((n_items, 6)).astype(np.float32)
    image = rng.standard_normal((n_items, 3)).astype(np.float32)
    image_present = np.ones(n_items, dtype=bool)
    image_present[:4] = False
    image[:4] = np.nan  # missing images: fuse fills them explicitly (zero rows), never NaN into training
    fused = fuse({"text": text, "image": (image, image_present)}, weights={"text": 1.0, "image": 0.5})
    model = HybridMF(*train.shape, fused, TrainConfig(**FAST)).fit(train)
    assert [b.name for b in model.blocks()] == ["id", "text", "image", "bias"]
    assert np.all(model.item_vectors()[:4, model.blocks()[2].columns] == 0)
    profile = ContentProfile(fused).fit(train)
    assert [b.name for b in profile.blocks()] == ["text", "image"]


@pytest.mark.parametrize("kind", ["bpr", "hybrid"])
def test_fold_in_places_new_users_with_their_group(rng, kind):
    data, _, item_group = planted(rng, n_users=200, n_items=120, density=0.3)
    config = TrainConfig(**{**FAST, **LEARN["native" if kind == "bpr" else "torch"]})
    if kind == "bpr":
        model = BPRMF(*data.shape, config).fit(data)
    else:
        features = np.eye(3, dtype=np.float32)[item_group]  # the content says the group
        model = HybridMF(*data.shape, features, config).fit(data)
    # Six "new" users, each with 6 items of one group as their history: their folded vectors must
    # prefer that group's unseen items, and keep the constant 1 that meets the item bias.
    user_group = np.arange(6) % 3
    picks = [rng.choice(np.flatnonzero(item_group == g), size=6, replace=False) for g in user_group]
    history = sp.csr_matrix(
        (np.ones(36), (np.repeat(np.arange(6), 6), np.concatenate(picks))), shape=(6, data.shape[1])
    )
    vectors = model.fold_in(history)
    assert vectors.shape == (6, model.user_vectors().shape[1]) and np.all(vectors[:, -1] == 1.0)
    scores = vectors @ model.item_vectors().T
    in_group = []
    for u in range(6):
        unseen = np.setdiff1d(np.arange(data.shape[1]), history[u].indices)
        top = unseen[np.argsort(-scores[u, unseen])[:10]]
        in_group.append(np.mean(item_group[top] == user_group[u]))
    # A random top-10 holds ~1/3 of the user's group; folded users hold most of it.
    assert np.mean(in_group) >= 0.75 and min(in_group) >= 0.5, in_group
    assert np.array_equal(model.fold_in(history), vectors)  # seeded negatives: deterministic
    empty = model.fold_in(sp.csr_matrix((1, data.shape[1]), dtype=np.float32))
    assert np.all(empty[0, :-1] == 0) and empty[0, -1] == 1.0
    with pytest.raises(ValueError, match="history must be a scipy sparse matrix with 120 columns"):
        model.fold_in(sp.csr_matrix((1, 7)))
