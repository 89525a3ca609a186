"""The pipeline: Cornac-exact split, protocol matrices, evaluation glue, epoch search, end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast.data import load_grouplens
from mmrec_fast.evaluation import evaluate_model
from mmrec_fast.metrics import candidate_counts, evaluate
from mmrec_fast.models import BPRMF, ContentProfile, TrainConfig
from mmrec_fast.pipeline import (
    cornac_ratio_split,
    fit_with_early_stopping,
    holdout_entries,
    item_texts,
    make_eval_split,
    run_experiment,
)
from mmrec_fast.pipeline.experiment import MODELS
from mmrec_fast.reference import topk_reference

GENRES = ["Action", "Comedy", "Drama"]


@pytest.fixture
def grouplens_dir(tmp_path):
    """A tiny MovieLens in GroupLens layout: 50 users, 30 movies, two taste groups, titles and genres."""
    rng = np.random.default_rng(3)
    lines = []
    for u in range(1, 51):
        for i in range(1, 31):
            if rng.random() < (0.45 if u % 2 == i % 2 else 0.05):
                lines.append(f"{u}\t{i}\t{rng.integers(1, 6)}\t{880000000 + len(lines)}")
    (tmp_path / "u.data").write_text("\n".join(lines) + "\n")
    items = []
    for i in range(1, 31):
        flags = ["1" if (i % 3) == g else "0" for g in range(3)]
        items.append(f"{i}|Movie number {i} ({1980 + i})|01-Jan-{1980 + i}||http://x|" + "|".join(flags))
    (tmp_path / "u.item").write_text("\n".join(items) + "\n", encoding="latin-1")
    (tmp_path / "u.genre").write_text("\n".join(f"{g}|{j}" for j, g in enumerate(GENRES)) + "\n")
    return tmp_path


def _bench_module():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "benchmarks" / "movielens_vs_cornac.py"
    spec = importlib.util.spec_from_file_location("movielens_vs_cornac", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_cornac_ratio_split_is_cornacs(grouplens_dir):
    cornac_split = pytest.importorskip("cornac.eval_methods", reason="cornac==3.0.1 is in the test extra")
    bench = _bench_module()
    data = load_grouplens(grouplens_dir)
    rows = list(
        zip(
            data.user_map.decode(data.users).astype(str),
            data.item_map.decode(data.items).astype(str),
            data.ratings.astype(float),
        )
    )
    for seed in (123, 7):
        train, test = cornac_ratio_split(data, 0.2, seed)
        ratio = cornac_split.RatioSplit(data=rows, test_size=0.2, seed=seed, exclude_unknowns=False, verbose=False)
        theirs_train, theirs_test = bench.cornac_split_rows(ratio)
        assert bench.our_split_rows(data, train) == theirs_train
        assert bench.our_split_rows(data, test) == theirs_test
        assert len(train) == len(theirs_train) and len(test) == len(theirs_test)


def test_eval_split_matrices(grouplens_dir):
    data = load_grouplens(grouplens_dir)
    split = make_eval_split(data, test_size=0.3, seed=1, relevance=4.0)
    train, pos, exclude = split.train_matrix, split.positives, split.exclude
    assert set(train.data) == {1.0} and set(pos.data) == {1.0}
    assert (train.multiply(exclude) != train).nnz == 0  # every training pair is excluded
    assert train.multiply(pos).nnz == 0  # no held-out positive was trained on
    unseen = np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() == 0)
    assert np.all(exclude[:, unseen].toarray() == 1)  # outside the training catalogue
    # positives are exactly the kept test rows rated >= 4 whose user and item occur in training
    test = split.test
    keep = test.ratings >= 4
    expected = sp.csr_matrix((np.ones(keep.sum()), (test.users[keep], test.items[keep])), shape=train.shape)
    assert (expected != pos).nnz == 0
    assert np.all(np.isin(test.items, np.flatnonzero(np.asarray(train.sum(axis=0)).ravel() > 0)))


def test_evaluate_model_equals_reference_ranking(rng, grouplens_dir):
    data = load_grouplens(grouplens_dir)
    split = make_eval_split(data, test_size=0.3, seed=2)
    model = BPRMF(data.n_users, data.n_items, TrainConfig(dim=6, epochs=3, progress=False)).fit(split.train_matrix)
    ours = evaluate_model(model, split.positives, exclude=split.exclude, ks=(3, 5))
    ids, scores, _ = topk_reference(
        model.user_vectors(),
        model.item_vectors(),
        data.n_items,
        excl_indptr=split.exclude.indptr,
        excl_indices=split.exclude.indices,
    )
    ref = evaluate(
        ids,
        split.positives,
        ks=(3, 5),
        n_candidates=candidate_counts(data.n_items, split.exclude),
        scores=scores.astype(np.float32),
    )
    assert ours.keys() == ref.keys()
    for key in ours:
        assert ours[key] == pytest.approx(ref[key], abs=1e-12), key


def test_cornac_bpr_numbers_reproduced_on_movielens():
    """Cornac's BPR factors, ranked by our engine and scored by our metrics: the issue's numbers."""
    pytest.importorskip("recbole", reason="MovieLens-100K ships inside recbole (pip install --no-deps recbole==1.2.1)")
    pytest.importorskip("cornac", reason="cornac==3.0.1 is in the test extra")
    bench = _bench_module()
    from mmrec_fast.data import load_movielens_100k

    data = load_movielens_100k()
    split = make_eval_split(data, test_size=0.2, seed=123, relevance=4.0)
    metrics, info = bench.cornac_bpr(data, split, own_eval=False)
    assert info["split_identical"]
    for key, expected in bench.CORNAC_BPR_EXPECTED.items():
        assert round(metrics[key], 4) == expected, key


def test_holdout_entries_partition(rng):
    matrix = sp.random(40, 30, density=0.3, format="csr", random_state=1)
    kept, held = holdout_entries(matrix, 0.25, seed=4)
    assert kept.nnz + held.nnz == matrix.nnz
    assert kept.multiply(held).nnz == 0
    assert abs(held.nnz / matrix.nnz - 0.25) < 0.1
    again = holdout_entries(matrix, 0.25, seed=4)[1]
    assert (again != held).nnz == 0
    with pytest.raises(ValueError, match="fraction"):
        holdout_entries(matrix, 1.5, seed=0)


def test_epoch_search_then_refit(grouplens_dir):
    data = load_grouplens(grouplens_dir)
    split = make_eval_split(data, seed=3)
    config = TrainConfig(dim=6, epochs=12, patience=2, progress=False, lr=0.05)
    model = fit_with_early_stopping(lambda c: BPRMF(data.n_users, data.n_items, c), split.train_matrix, config)
    best = [e["epoch"] for e in model.search_history if e.get("best")]
    assert len(best) == 1
    assert len(model.history) == best[0]  # refit runs exactly the chosen epochs
    assert all("val_ndcg@10" not in e for e in model.history)  # the refit never looks at validation


def test_item_texts_from_titles_and_genres(grouplens_dir):
    data = load_grouplens(grouplens_dir)
    texts = item_texts(data)
    code = int(data.item_map.encode(np.asarray([4]))[0])
    assert texts[code] == "Movie number 4 (1984). Genres: Comedy."


def test_run_experiment_end_to_end(tmp_path, grouplens_dir):
    data = load_grouplens(grouplens_dir)
    config = TrainConfig(dim=6, content_dim=4, epochs=3, progress=False)
    lines = []
    result = run_experiment(
        data, config=config, out_dir=tmp_path / "out", ks=(3, 5), progress=False, log=lines.append, show_users=2
    )
    assert set(result.metrics) == set(MODELS)
    for metrics in result.metrics.values():
        assert 0 <= metrics["ndcg@5"] <= 1 and 0 <= metrics["auc"] <= 1
    out = tmp_path / "out"
    for name in (
        "metrics.json",
        "metrics_at_k.png",
        "training.png",
        "recommendations.csv",
        "recommendations.parquet",
        "recommendations.jsonl",
    ):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "metrics.json").read_text())["metrics"]["hybrid"]["n_users"] > 0
    first = json.loads((out / "recommendations.jsonl").read_text().splitlines()[0])
    assert {
        "user",
        "rank",
        "item",
        "title",
        "probability",
        "contrib_id",
        "contrib_text",
        "contrib_bias",
        "share_text",
        "because_you_liked",
    } <= set(first)
    assert any("because you liked" in line for line in lines)
    assert result.models["hybrid"].config.loss == "softmax"
    # the content model's features are the cached text embeddings: a second run reuses the cache
    assert any((out / "cache").rglob("*"))


def test_content_profile_on_text_features_prefers_same_genre(grouplens_dir):
    from mmrec_fast.pipeline import text_features

    data = load_grouplens(grouplens_dir)
    features = text_features(item_texts(data), progress=False)
    assert features.shape == (data.n_items, 384)
    np.testing.assert_allclose(np.linalg.norm(features, axis=1), 1.0, rtol=1e-5)
    comedy = [i for i, t in enumerate(item_texts(data)) if "Comedy" in t]
    history = sp.csr_matrix((np.ones(3), ([0, 0, 0], comedy[:3])), shape=(1, data.n_items))
    model = ContentProfile(features).fit(history)
    scores = features @ model.user_vectors()[0]
    others = [i for i in range(data.n_items) if i not in comedy]
    assert np.mean(scores[comedy[3:]]) > np.mean(scores[others])
