"""The EASE + iALS blend: its score against a float64 reference built from the parts, fold-in, saving, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast import topk
from mmrec_fast.models import EASE, IALS, EASEIALSBlend, load_model, save_model
from mmrec_fast.models import blend as blend_module
from mmrec_fast.models.base import registered_kinds
from mmrec_fast.pipeline import DEFAULT_PARAMS, MODEL_KINDS, SEARCH_SPACES, train_model, tune

IALS_SMALL = {"dim": 4, "epochs": 3}


def ratings(rng, n_users=30, n_items=17, density=0.3, *, empty_users=(), empty_items=()):
    """1-5 ratings at random positions, with some users/items forced empty (adversarial rows/columns)."""
    dense = np.where(rng.random((n_users, n_items)) < density, rng.integers(1, 6, (n_users, n_items)), 0)
    dense[list(empty_users), :] = 0
    dense[:, list(empty_items)] = 0
    return sp.csr_matrix(dense.astype(np.float32))


def dense_rms(scores: np.ndarray) -> float:
    return float(np.sqrt(np.mean(scores.astype(np.float64) ** 2)))


def reference_scores(
    x: sp.csr_matrix, weight: float, *, use_values: bool, normalize: bool = True, ease_reg: float = 7.0, seed: int = 0
) -> np.ndarray:
    """w * EASE / rms + (1 - w) * iALS / rms, from the two parts fitted on their own, in float64."""
    ease = EASE(*x.shape, reg=ease_reg, use_values=use_values).fit(x)
    # The blend's own iALS defaults (not IALS's class defaults).
    ials = IALS(*x.shape, alpha0=0.55, reg=0.67, nu=0.5, use_values=use_values, seed=seed, **IALS_SMALL).fit(x)
    e = ease.user_vectors().astype(np.float64) @ ease.item_vectors().T.astype(np.float64)
    a = ials.user_vectors().astype(np.float64) @ ials.item_vectors().T.astype(np.float64)
    se, sa = (dense_rms(e) or 1.0, dense_rms(a) or 1.0) if normalize else (1.0, 1.0)
    return weight * e / se + (1 - weight) * a / sa


def blend(x, weight, **kwargs):
    kwargs.setdefault("ease_reg", 7.0)
    return EASEIALSBlend(*x.shape, weight=weight, **IALS_SMALL, **kwargs).fit(x)


def scores_of(model) -> np.ndarray:
    return model.user_vectors().astype(np.float64) @ model.item_vectors().T.astype(np.float64)


# ------------------------------------------------------------------------------------------ score_rms
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (40, 9, 6)])
def test_score_rms_matches_the_dense_reference(rng, monkeypatch, sparse, shape):
    n_users, n_items, d = shape
    users = rng.normal(size=(n_users, d)).astype(np.float32)
    users[rng.random(users.shape) < 0.5] = 0
    items = rng.normal(size=(n_items, d)).astype(np.float32)
    expected = dense_rms(users.astype(np.float64) @ items.T.astype(np.float64))
    arg = sp.csr_matrix(users) if sparse else users
    assert blend_module.score_rms(arg, items) == pytest.approx(expected, rel=1e-12, abs=1e-300)
    # Blocks of one or two users must add up to the same number (the tiling path).
    monkeypatch.setattr(blend_module, "RMS_BLOCK_BYTES", 8 * n_items * 2)
    assert blend_module.score_rms(arg, items) == pytest.approx(expected, rel=1e-12, abs=1e-300)


def test_score_rms_of_all_zero_scores_is_zero_and_bad_shapes_are_refused():
    assert blend_module.score_rms(np.zeros((3, 2)), np.ones((4, 2))) == 0.0
    with pytest.raises(ValueError, match="users"):
        blend_module.score_rms(np.zeros((3, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="at least one row"):
        blend_module.score_rms(np.zeros((0, 2)), np.ones((4, 2)))


# ------------------------------------------------------------------------------------------ the score
@pytest.mark.parametrize("weight", [0.0, 0.2, 0.7, 1.0])
@pytest.mark.parametrize("use_values", [True, False])
@pytest.mark.parametrize("empty", [((), ()), ((0, 5), (2, 16))])
def test_blend_score_is_the_weighted_normalised_sum_of_the_parts(rng, weight, use_values, empty):
    x = ratings(rng, empty_users=empty[0], empty_items=empty[1])
    model = blend(x, weight, use_values=use_values)
    expected = reference_scores(x, weight, use_values=use_values)
    np.testing.assert_allclose(scores_of(model), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_without_normalisation_the_raw_scores_are_weighted(rng):
    x = ratings(rng)
    model = blend(x, 0.3, use_values=True, normalize=False)
    assert model.scales == (1.0, 1.0)
    expected = reference_scores(x, 0.3, use_values=True, normalize=False)
    np.testing.assert_allclose(scores_of(model), expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())


def test_normalised_parts_have_unit_rms_and_the_blocks_split_the_score(rng):
    x = ratings(rng)
    model = blend(x, 0.4, use_values=True)
    users, items = model.user_vectors(), model.item_vectors()
    blocks = model.blocks()
    assert [b.name for b in blocks] == ["ease", "ials"]
    assert blocks[0].start == 0 and blocks[-1].stop == users.shape[1] == items.shape[1] == 17 + 4
    parts = [users[:, b.columns].astype(np.float64) @ items[:, b.columns].T.astype(np.float64) for b in blocks]
    np.testing.assert_allclose(parts[0] + parts[1], scores_of(model), rtol=1e-6, atol=1e-9)
    # After dividing by its scale each part has RMS 1, so the block RMS is its weight.
    assert dense_rms(parts[0]) == pytest.approx(0.4, rel=1e-5)
    assert dense_rms(parts[1]) == pytest.approx(0.6, rel=1e-5)


def test_the_engine_ranks_the_blend_like_the_reference(rng):
    x = ratings(rng, n_users=25, n_items=30)
    model = blend(x, 0.5, use_values=True)
    expected = reference_scores(x, 0.5, use_values=True)
    expected[x.toarray() > 0] = -np.inf
    top = topk(model.user_vectors(), model.item_vectors(), 5, exclude=x)
    # Compare the scores at the returned ranks (ids may swap only on float32 near-ties).
    got = np.take_along_axis(expected, top.indices, axis=1)
    np.testing.assert_allclose(got, -np.sort(-expected, axis=1)[:, :5], rtol=1e-5, atol=1e-5)


def test_a_one_item_catalogue_keeps_finite_vectors(rng):
    x = sp.csr_matrix(np.ones((4, 1), np.float32))
    model = blend(x, 0.5)
    assert model.scales[0] == 1.0  # EASE's zero-diagonal scores are all 0: no division by 0
    assert np.isfinite(model.user_vectors()).all() and np.isfinite(model.item_vectors()).all()


# ------------------------------------------------------------------------------------------ fold-in, saving
def test_fold_in_of_trained_histories_gives_the_trained_user_vectors(rng):
    x = ratings(rng)
    model = EASEIALSBlend(*x.shape, weight=0.3, ease_reg=7.0, use_values=True, solver="cholesky", **IALS_SMALL).fit(x)
    np.testing.assert_allclose(model.fold_in(x), model.user_vectors(), rtol=1e-4, atol=1e-5)
    lists = model.fold_in([[0, 3], [], [16]])
    assert lists.shape == (3, 17 + 4) and np.all(lists[1] == 0)
    with pytest.raises(ValueError, match="history"):
        model.fold_in([[17]])


def test_state_and_save_load_round_trip_bit_exact(rng, tmp_path):
    x = ratings(rng)
    model = blend(x, 0.25, use_values=True, num_threads=1)
    assert registered_kinds()["ease-ials"] is EASEIALSBlend
    arrays, params = model.state()
    params = json.loads(json.dumps(params))
    again = EASEIALSBlend.from_state({k: a.copy() for k, a in arrays.items()}, params)
    for name in ("user_vectors", "item_vectors"):
        np.testing.assert_array_equal(getattr(again, name)(), getattr(model, name)())
    np.testing.assert_array_equal(again.fold_in(x[:3]), model.fold_in(x[:3]))
    assert again.blocks() == model.blocks() and again.params() == model.params()
    loaded = load_model(save_model(model, tmp_path / "blend")).model
    assert type(loaded) is EASEIALSBlend
    np.testing.assert_array_equal(loaded.user_vectors(), model.user_vectors())
    np.testing.assert_array_equal(loaded.item_vectors(), model.item_vectors())
    with pytest.raises(ValueError, match="scales"):
        EASEIALSBlend.from_state({k: a for k, a in arrays.items() if k != "scales"}, params)
    with pytest.raises(ValueError, match="scales"):
        EASEIALSBlend.from_state({**arrays, "scales": np.array([1.0, 0.0])}, params)
    with pytest.raises(ValueError, match="arrays"):
        EASEIALSBlend.from_state({"scales": arrays["scales"]}, params)


@pytest.mark.parametrize(
    "kwargs, error, word",
    [
        ({"weight": -0.1}, ValueError, "weight"),
        ({"weight": 1.5}, ValueError, "weight"),
        ({"weight": float("nan")}, ValueError, "weight"),
        ({"weight": "half"}, TypeError, "weight"),
        ({"weight": True}, TypeError, "weight"),
        ({"ease_reg": 0.0}, ValueError, "ease_reg"),
        ({"dim": 0}, ValueError, "dim"),
        ({"ials_reg": -1.0}, ValueError, "ials_reg"),
    ],
)
def test_bad_settings_are_refused_naming_the_argument(kwargs, error, word):
    with pytest.raises(error, match=word):
        EASEIALSBlend(5, 4, **kwargs)


def test_unfitted_model_says_so():
    with pytest.raises(RuntimeError, match="fit"):
        EASEIALSBlend(5, 4).user_vectors()


# ------------------------------------------------------------------------------------------ pipeline
def test_the_pipeline_trains_and_tunes_the_blend(rng):
    assert "ease-ials" in MODEL_KINDS and set(SEARCH_SPACES["ease-ials"]) <= set(DEFAULT_PARAMS["ease-ials"])
    x = ratings(rng, n_users=60, n_items=25, density=0.3)
    model = train_model("ease-ials", *x.shape, x, params=IALS_SMALL, seed=3)
    assert isinstance(model, EASEIALSBlend) and model.weight == DEFAULT_PARAMS["ease-ials"]["weight"]
    assert model.ials.seed == 3 and model.tuning["params"]["dim"] == 4
    space = {"weight": [0.0, 0.5, 1.0]}
    best, trials = tune("ease-ials", x, space, budget=4, seed=0, defaults={**DEFAULT_PARAMS["ease-ials"], **IALS_SMALL})
    assert [t.params["weight"] for t in trials][0] == DEFAULT_PARAMS["ease-ials"]["weight"]
    assert sorted(t.params["weight"] for t in trials[1:]) == [0.0, 0.5, 1.0]
    assert best["weight"] == max(trials, key=lambda t: (t.score, -t.index)).params["weight"]


def test_the_quality_benchmark_search_picks_the_best_mean_over_search_seeds(monkeypatch):
    """benchmarks/quality.py --search-seeds: a setting best on one split but poor on the others loses."""
    import importlib.util
    from pathlib import Path

    from mmrec_fast.pipeline.tuning import Trial

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("quality_bench_for_blend", path)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    # Validation scores per seed: weight 0.1 wins seed 0 alone; 0.2 has the best mean; 0.3 is missing
    # under seed 2 (not tried everywhere, so it cannot win however high).
    table = {0: {0.1: 0.30, 0.2: 0.25, 0.3: 0.9}, 1: {0.1: 0.10, 0.2: 0.24, 0.3: 0.9}, 2: {0.1: 0.10, 0.2: 0.26}}
    seen = []

    def fake_tune(kind, ratings, *, seed, **kwargs):
        seen.append(seed)
        trials = [Trial({"weight": w}, {"weight": w}, s, {}, 0.0, i) for i, (w, s) in enumerate(table[seed].items())]
        return dict(max(trials, key=lambda t: t.score).chosen), trials

    monkeypatch.setattr(quality, "tune", fake_tune)
    features = np.zeros((3, 2), np.float32)
    entry = quality.search("ease-ials", sp.csr_matrix((2, 3)), features, [0, 1, 2])
    assert seen == [0, 1, 2] and entry["best"] == {"weight": 0.2}
    assert entry["best_score"] == pytest.approx(0.25) and entry["seeds"] == [0, 1, 2]
    single = quality.search("ease-ials", sp.csr_matrix((2, 3)), features, [0])
    assert single["best"] == {"weight": 0.3}
