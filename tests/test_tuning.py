"""The training front door and the validation-only search: every kind trains, the test split is never read."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast.pipeline as pipeline
import mmrec_fast.pipeline.tuning as tuning_module
from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.pipeline import (
    CONTENT_KINDS,
    DEFAULT_PARAMS,
    MODEL_KINDS,
    Budget,
    fit_kind,
    train_model,
    tune,
    validation_split,
)
from mmrec_fast.pipeline.tuning import search_points

#: Small settings per kind so every kind trains in well under a second on the toy data.
TINY = {
    "bpr": {"dim": 8, "epochs": 4, "eval_every": 1, "patience": 4},
    "hybrid": {"dim": 8, "content_dim": 4, "epochs": 2, "n_negatives": 16},
    "ials": {"dim": 8, "epochs": 3},
    "ials-content": {"dim": 8, "epochs": 3},
}


def toy_ratings(rng, n_users=60, n_items=40):
    """Two taste groups (so models have something to learn) with 1-5 ratings, plus noise."""
    group = rng.integers(0, 2, n_users)
    liked = (np.arange(n_items)[None, :] % 2) == group[:, None]
    p = np.where(liked, 0.35, 0.05)
    mask = rng.random((n_users, n_items)) < p
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    ratings = np.where(liked, rng.integers(3, 6, (n_users, n_items)), rng.integers(1, 4, (n_users, n_items)))
    return sp.csr_matrix((mask * ratings).astype(np.float32))


def entries(matrix):
    coo = sp.coo_matrix(matrix)
    coo.eliminate_zeros()
    return set(zip(coo.row.tolist(), coo.col.tolist()))


# ------------------------------------------------------------------------------------------ search points
def test_search_points_start_with_defaults_are_distinct_and_seeded():
    space = {"a": [1, 2, 3], "b": ["x", "y"]}
    points = search_points(space, {"a": 9, "b": "x", "c": 0}, 5, seed=1)
    assert points[0] == {"a": 9, "b": "x", "c": 0}
    assert len(points) == 5 and len({tuple(sorted(p.items())) for p in points}) == 5
    assert all(p["c"] == 0 and p["a"] in (1, 2, 3) for p in points[1:])
    assert points == search_points(space, {"a": 9, "b": "x", "c": 0}, 5, seed=1)
    assert points != search_points(space, {"a": 9, "b": "x", "c": 0}, 5, seed=2)


def test_search_points_exhaust_a_small_grid_without_repeating_the_defaults():
    space = {"a": [1, 2], "b": [3, 4]}
    points = search_points(space, {"a": 1, "b": 3}, None, seed=0)
    assert len(points) == 4  # the defaults are a grid point: 1 + 3 others
    assert {(p["a"], p["b"]) for p in points} == {(1, 3), (1, 4), (2, 3), (2, 4)}


@pytest.mark.parametrize("space, error", [({"a": []}, ValueError), ({"a": "abc"}, ValueError), ([1], TypeError)])
def test_search_points_reject_bad_spaces(space, error):
    with pytest.raises(error, match="space"):
        search_points(space, {}, 3, seed=0)


@pytest.mark.parametrize(
    "value, want", [(None, Budget()), (5, Budget(trials=5)), ({"seconds": 2.0}, Budget(seconds=2.0))]
)
def test_budget_coercion(value, want):
    assert Budget.coerce(value) == want


@pytest.mark.parametrize(
    "bad, error",
    [
        (0, ValueError),
        ({"trials": -1}, ValueError),
        ({"seconds": 0}, ValueError),
        ({"minutes": 1}, ValueError),
        ("3", TypeError),
        (True, TypeError),
    ],
)
def test_budget_rejects_bad_values(bad, error):
    with pytest.raises(error, match="budget"):
        Budget.coerce(bad)


# ------------------------------------------------------------------------------------------ validation split
@pytest.mark.parametrize("relevance", [None, 4.0])
def test_validation_split_is_carved_from_train_only(rng, relevance):
    r = toy_ratings(rng)
    fit, val, exclude = validation_split(r, 0.2, seed=3, relevance=relevance)
    everything = entries(r)
    assert entries(fit) | entries(val) <= everything
    assert not entries(fit) & entries(val)
    held = everything - entries(fit)
    seen = set(np.flatnonzero(np.diff(fit.tocsc().indptr)).tolist())
    want = {(u, i) for u, i in held if i in seen and (relevance is None or r[u, i] >= relevance)}
    assert entries(val) == want
    unseen = set(range(r.shape[1])) - seen
    assert entries(exclude) == entries(fit) | {(u, i) for u in range(r.shape[0]) for i in unseen}
    assert np.all(val.data == 1)
    np.testing.assert_array_equal(fit.toarray()[fit.toarray() != 0], r.toarray()[fit.toarray() != 0])


def test_validation_split_rejects_too_little_data():
    with pytest.raises(ValueError, match="train"):
        validation_split(sp.csr_matrix(np.eye(2)), 0.1, seed=0, relevance=9.0)


# ------------------------------------------------------------------------------------------ tune
def test_tune_is_seeded_respects_the_budget_and_returns_the_best(rng):
    r = toy_ratings(rng)
    space = {"reg": [1.0, 10.0, 100.0, 1000.0]}
    best, trials = tune("ease", r, space, budget=3, seed=4, defaults={"reg": 50.0})
    assert len(trials) == 3 and trials[0].params == {"reg": 50.0}
    assert best == max(trials, key=lambda t: (t.score, -t.index)).chosen
    again, trials2 = tune("ease", r, space, budget=3, seed=4, defaults={"reg": 50.0})
    assert again == best and [t.score for t in trials2] == [t.score for t in trials]
    # Each trial's score is the evaluator's on the validation split (a direct re-computation).
    fit, val, exclude = validation_split(r, 0.1, 4)
    model, _ = fit_kind("ease", *r.shape, fit, trials[1].params, seed=4)
    assert trials[1].score == pytest.approx(evaluate_model(model, val, exclude=exclude, ks=(10,))["ndcg@10"])


def test_tune_stops_at_the_seconds_budget(rng):
    best, trials = tune(
        "ease", toy_ratings(rng), {"reg": [1.0, 10.0, 100.0]}, budget=Budget(trials=None, seconds=1e-9), seed=0
    )
    assert len(trials) == 1 and best == DEFAULT_PARAMS["ease"]


def test_tune_records_early_stopped_epochs(rng):
    best, trials = tune("bpr", toy_ratings(rng), {"dim": [4, 8]}, budget=2, seed=0, defaults=TINY["bpr"])
    for t in trials:
        assert 1 <= t.chosen["epochs"] <= t.params["epochs"]
    assert best["epochs"] <= TINY["bpr"]["epochs"]


def test_tune_rejects_bad_input(rng):
    r = toy_ratings(rng)
    with pytest.raises(ValueError, match="kind"):
        tune("svd", r)
    with pytest.raises(TypeError, match="train"):
        tune("ease", r.toarray())
    with pytest.raises(ValueError, match="space"):
        tune("ease", r, {"lam": [1.0]})
    with pytest.raises(ValueError, match="features"):
        tune("ials-content", r)
    with pytest.raises(ValueError, match="metric"):
        tune("mostpop", r, metric="ndcg@7")


def test_a_failing_setting_is_recorded_not_fatal(rng):
    best, trials = tune("ease", toy_ratings(rng), {"reg": [-1.0]}, budget=2, seed=0)
    assert trials[1].error is not None and math.isinf(trials[1].score)
    assert best == DEFAULT_PARAMS["ease"]


# ------------------------------------------------------------------------------------------ test isolation
class Poison:
    """Stands in for the test split: any use of it fails the test."""

    def __getattr__(self, name):
        raise AssertionError(f"the test split was read during tuning (attribute {name!r})")

    def __array__(self, *args, **kwargs):
        raise AssertionError("the test split was read during tuning (as an array)")


def test_tuning_only_ever_scores_held_out_training_entries(rng, monkeypatch):
    r = toy_ratings(rng, 80, 50)
    coo = r.tocoo()
    test_mask = np.random.default_rng(0).random(coo.nnz) < 0.2
    train = sp.csr_matrix((coo.data[~test_mask], (coo.row[~test_mask], coo.col[~test_mask])), shape=r.shape)
    test = entries(sp.csr_matrix((coo.data[test_mask], (coo.row[test_mask], coo.col[test_mask])), shape=r.shape))
    seen = []
    real = tuning_module.evaluate_model

    def spy(model, positives, **kwargs):
        seen.append(entries(positives))
        return real(model, positives, **kwargs)

    monkeypatch.setattr(tuning_module, "evaluate_model", spy)
    features = rng.normal(size=(50, 6)).astype(np.float32)
    for kind in ("ease", "ials-content", "bpr"):
        model = train_model(
            kind, *r.shape, train, features=features, params=TINY.get(kind), tune=True, budget=2, relevance=4.0
        )
        assert model.tuning["source"] == "search" and len(model.tuning["trials"]) == 2
    assert seen and all(s and s <= entries(train) and not s & test for s in seen)


def test_the_tune_command_never_touches_the_test_split(tmp_path, monkeypatch, capsys, rng):
    from mmrec_fast.cli import main
    from mmrec_fast.models import load_model

    r = toy_ratings(rng, 50, 30).tocoo()
    log = tmp_path / "log.csv"
    log.write_text("user,item,rating\n" + "".join(f"u{u},i{i},{v:g}\n" for u, i, v in zip(r.row, r.col, r.data)))
    real = pipeline.make_eval_split

    def poisoned(*args, **kwargs):
        split = real(*args, **kwargs)
        split.positives, split.exclude, split.test = Poison(), Poison(), Poison()
        return split

    monkeypatch.setattr(pipeline, "make_eval_split", poisoned)
    out = tmp_path / "model"
    code = main(
        [
            "tune",
            "--model",
            "ease",
            "--out",
            str(out),
            "--trials",
            "3",
            "--data",
            str(log),
            "--user-col",
            "user",
            "--item-col",
            "item",
            "--rating-col",
            "rating",
            "--no-progress",
            "--json",
            str(tmp_path / "trials.json"),
        ]
    )
    printed = capsys.readouterr()
    assert code == 0, printed.err
    saved = load_model(out)
    tuning = saved.metadata["tuning"]
    assert tuning["source"] == "search" and len(tuning["trials"]) == 3
    assert tuning["params"] == max(tuning["trials"], key=lambda t: (t["score"], -t["index"]))["chosen"]
    assert saved.model.reg == tuning["params"]["reg"]
    assert json.loads((tmp_path / "trials.json").read_text()) == tuning
    assert "best of 3 trials" in printed.out
    # Negative control: a command that does read the test split (train prints test metrics) meets the
    # poison (the evaluator rejects it as not a sparse matrix), so the poison was in place.
    code = main(
        [
            "train",
            "--model",
            "bpr",
            "--epochs",
            "2",
            "--out",
            str(tmp_path / "bpr"),
            "--data",
            str(log),
            "--user-col",
            "user",
            "--item-col",
            "item",
            "--rating-col",
            "rating",
            "--no-progress",
        ]
    )
    assert code == 2 and "positives" in capsys.readouterr().err


def test_the_tune_command_rejects_an_unknown_kind(tmp_path, capsys):
    from mmrec_fast.cli import main

    assert main(["tune", "--model", "svd", "--out", str(tmp_path / "m")]) == 2
    assert "--model" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ front door
@pytest.mark.parametrize("kind", MODEL_KINDS)
def test_train_model_builds_every_kind(rng, kind):
    r = toy_ratings(rng)
    features = rng.normal(size=(r.shape[1], 6)).astype(np.float32)
    model = train_model(kind, *r.shape, r, features=features, params=TINY.get(kind), seed=1)
    users, items = model.user_vectors(), model.item_vectors()
    assert users.shape[0] == r.shape[0] and items.shape[0] == r.shape[1] and users.shape[1] == items.shape[1]
    assert model.tuning["source"] == "defaults"
    assert set(DEFAULT_PARAMS[kind]) <= set(model.tuning["params"])
    json.dumps(model.tuning)  # saved in metadata: must be plain JSON
    # The same call again gives the same model (seeded; the native BPR is deterministic single-threaded
    # only, so it is compared on its validation-chosen setting instead).
    again = train_model(kind, *r.shape, r, features=features, params=TINY.get(kind), seed=1)
    assert again.tuning["params"] == model.tuning["params"]
    if kind != "bpr":
        np.testing.assert_array_equal(again.user_vectors(), users)


def test_train_model_tuned_refit_is_fit_kind_on_all_of_train(rng):
    r = toy_ratings(rng)
    model = train_model("ials", *r.shape, r, params=TINY["ials"], tune=True, budget=3, seed=2)
    direct, _ = fit_kind("ials", *r.shape, r, model.tuning["params"], seed=2)
    np.testing.assert_array_equal(model.user_vectors(), direct.user_vectors())
    scores = [t["score"] for t in model.tuning["trials"]]
    assert scores[0] <= max(scores)  # the defaults were tried first; the best is at least as good


@pytest.mark.parametrize(
    "call, error, word",
    [
        (lambda r: train_model("svd", *r.shape, r), ValueError, "kind"),
        (lambda r: train_model("hybrid", *r.shape, r), ValueError, "features"),
        (lambda r: train_model("ease", *r.shape, r, params={"lam": 3}), ValueError, "params"),
        (lambda r: train_model("bpr", *r.shape, r, params={"bogus": 3}), ValueError, "params"),
        (lambda r: train_model("ease", 3, 3, r), ValueError, "shape"),
        (lambda r: train_model("ease", *r.shape, r.toarray()), TypeError, "train"),
        (lambda r: train_model("ease", *r.shape, r, seed=1.5), TypeError, "seed"),
        (lambda r: train_model("bpr", *r.shape, r, config={"dim": 3}), TypeError, "config"),
    ],
)
def test_train_model_rejects_bad_input(rng, call, error, word):
    with pytest.raises(error, match=word):
        call(toy_ratings(rng))


def test_content_kinds_need_features():
    assert set(CONTENT_KINDS) <= set(MODEL_KINDS)


# ------------------------------------------------------------------------------------------ quality benchmark
def test_quality_benchmark_quick_mode_runs(tmp_path):
    """benchmarks/quality.py --quick on a tiny synthetic log: every table and target is produced."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "quality.py"
    spec = importlib.util.spec_from_file_location("quality_benchmark", path)
    quality = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(quality)
    models = ["ease", "ials-content", "content", "mostpop"]
    assert (
        quality.main(["--quick", "--seeds", "0", "1", "--models", *models, "--no-cornac", "--out", str(tmp_path)]) == 0
    )
    report = json.loads((tmp_path / "quality.json").read_text())
    assert set(report["warm"]) == set(models) and all(len(r) == 2 for r in report["warm"].values())
    for kind in ("ials-content", "content"):  # the kinds with a content path score cold items
        assert all("among_cold" in r for r in report["cold_items"][kind])
    assert all("skipped" in r for r in report["cold_items"]["ease"])
    # A content profile's fold-in is its retrain (the profile of a user depends on their row only).
    assert all(r["ratio_ndcg@10"] == pytest.approx(1.0) for r in report["cold_users"]["content"])
    text = (tmp_path / "quality.md").read_text()
    assert "## Warm" in text and "## Cold items" in text and "## Cold users" in text and "## Targets" in text
    # Re-rendering with another run's rows merged in (how the slow hybrid's separate run is added).
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"command": "other run", "warm": {"ease-copy": report["warm"]["ease"]}}))
    assert (
        quality.main(
            ["--from-json", str(tmp_path / "quality.json"), "--merge", str(other), "--out", str(tmp_path / "merged")]
        )
        == 0
    )
    merged = json.loads((tmp_path / "merged" / "quality.json").read_text())
    assert merged["warm"]["ease-copy"] == report["warm"]["ease"] and merged["warm"]["ease"] == report["warm"]["ease"]
    assert "| ease-copy |" in (tmp_path / "merged" / "quality.md").read_text()


def test_defaults_follow_the_kind_of_feedback(rng):
    from mmrec_fast.pipeline import BINARY_DEFAULTS, defaults_for

    ratings = toy_ratings(rng)
    binary = (ratings != 0).astype(np.float32)
    assert defaults_for("ease", ratings) == DEFAULT_PARAMS["ease"]
    assert defaults_for("ease", binary) == BINARY_DEFAULTS["ease"]
    assert defaults_for("bpr", binary) == DEFAULT_PARAMS["bpr"]  # no separate binary setting
    assert train_model("ease", *binary.shape, binary).tuning["params"] == BINARY_DEFAULTS["ease"]
    assert train_model("ease", *ratings.shape, ratings).tuning["params"] == DEFAULT_PARAMS["ease"]
