"""recommend() on a cached prepared index: same lists as a direct engine call, packed once, rows sliced."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast import _index_cache
from mmrec_fast.models.base import Recommender, ScoreBlock
from mmrec_fast.recommend import recommend


class _Fixed(Recommender):
    """Fixed vectors: an id block and a bias column (the base class's representation drops the bias)."""

    def __init__(self, users, items):
        self._u, self._v = users, items

    n_users = property(lambda self: self._u.shape[0])
    n_items = property(lambda self: self._v.shape[0])

    def user_vectors(self):
        return self._u

    def item_vectors(self):
        return self._v

    def blocks(self):
        d = self._u.shape[1]
        return [ScoreBlock("id", 0, d - 1), ScoreBlock("bias", d - 1, d)]

    def fold_in(self, history):  # pragma: no cover - not used
        raise NotImplementedError


def _model(rng, n_users=30, n_items=200, d=6):
    users = rng.integers(-2, 3, size=(n_users, d)).astype(np.float32)  # ties
    users[:, -1] = 1.0
    return _Fixed(users, rng.normal(size=(n_items, d)).astype(np.float32))


def test_lists_equal_the_engine_and_the_reference_explanations():
    rng = np.random.default_rng(0)
    model = _model(rng)
    seen = sp.random(30, 200, density=0.05, format="lil", random_state=1)
    seen[4, :] = 1  # a user who has seen everything: all padding
    seen = seen.tocsr()
    seen.data[seen.indptr[3] : seen.indptr[4]] = 0  # explicitly stored zeros still count as seen
    codes = np.array([4, 3, 17, 3])
    recs = recommend(model, codes, 5, exclude=seen, n_similar=2)
    want = mf.topk(model.user_vectors()[codes], model.item_vectors(), 5, exclude=sp.csr_matrix(seen)[codes])
    np.testing.assert_array_equal(recs.items, want.indices)
    np.testing.assert_array_equal(recs.scores, want.scores)
    np.testing.assert_array_equal(recs.probs, want.probs)
    assert (recs.items[0] == -1).all() and (recs.similar[0] == -1).all()
    total = sum(recs.contributions.values())
    listed = recs.items >= 0
    np.testing.assert_allclose(total[listed], recs.scores[listed], rtol=1e-5, atol=1e-5)
    # "because you liked": the user's past items by cosine of the id block (bias dropped), brute force.
    rep = model.item_vectors()[:, :-1].astype(np.float64)
    unit = rep / np.linalg.norm(rep, axis=1, keepdims=True)
    past = seen.tocsr()[17].indices
    for rank, item in enumerate(recs.items[2]):
        sims = unit[past] @ unit[item]
        best = past[np.argsort(-sims, kind="stable")[:2]]
        assert set(recs.similar[2, rank]) == set(best)


def test_the_item_matrix_is_packed_once_and_a_refit_is_seen():
    rng = np.random.default_rng(1)
    model = _model(rng)
    _index_cache.clear_index_cache()
    recommend(model, [0], 3)
    index = _index_cache.cached_index(model.item_vectors())
    recommend(model, [1, 2], 3, n_similar=0)
    assert _index_cache.cached_index(model.item_vectors()) is index
    old = recommend(model, [0], 3).items
    model._v = -model._v.copy()  # a refit: new arrays
    assert _index_cache.cached_index(model.item_vectors()) is not index
    assert not np.array_equal(recommend(model, [0], 3).items, old)


def test_only_the_requested_rows_are_read():
    rng = np.random.default_rng(2)
    model = _model(rng)
    seen = sp.random(30, 200, density=0.05, format="csr", random_state=3)
    other = seen.tolil()
    other[5, recommend(model, [5], 4, exclude=seen).items[0]] = 1  # only user 5's row differs ...
    other = other.tocsr()
    # ... so user 9 gets the same list whatever the other rows hold.
    a = recommend(model, [9], 4, exclude=seen)
    b = recommend(model, [9], 4, exclude=other)
    np.testing.assert_array_equal(a.items, b.items)
    assert not np.array_equal(
        recommend(model, [5], 4, exclude=seen).items, recommend(model, [5], 4, exclude=other).items
    )
    with pytest.raises(ValueError, match="exclude must be a sparse"):
        recommend(model, [0], 3, exclude=seen[:, :10])
    with pytest.raises(ValueError, match="history must be a sparse"):
        recommend(model, [0], 3, history=np.zeros((30, 200)))


def test_latency_script_runs_tiny(capsys):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "latency.py"
    spec = importlib.util.spec_from_file_location("latency_bench", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--calls", "2", "--sizes", "200", "500", "300"]) == 0
    text = capsys.readouterr().out
    for part in ("fixed cost: I=200", "floor: I=500", "recommend(): I=300", "numpy items @ users.T"):
        assert part in text
    assert module.percentiles([1e-6, 2e-6, 3e-6])[0] == pytest.approx(2.0)
