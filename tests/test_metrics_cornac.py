"""Our split -> exclusion -> ranking -> metrics pipeline against Cornac 3.0.1's own ``ranking_eval``.

This pins the protocol, not only the formulas: which items are candidates (Cornac keeps training
items rated below the threshold as negatives and drops items unknown to training), which test items
are positives (rating >= threshold, known items only), and which users count (at least one positive).
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from mmrec_fast.data import IdMap, Interactions, binarize, drop_unseen, random_split
from mmrec_fast.metrics import cornac_protocol, evaluate

cornac = pytest.importorskip("cornac")
from cornac.data import Dataset  # noqa: E402
from cornac.eval_methods.base_method import ranking_eval  # noqa: E402
from cornac.models import Recommender  # noqa: E402


class FixedScores(Recommender):
    """A Cornac model whose scores are a given matrix over Cornac's (user, item) indices."""

    def __init__(self, scores):
        super().__init__(name="FixedScores", trainable=False)
        self.scores = scores

    def score(self, user_idx, item_idx=None):
        return self.scores[user_idx] if item_idx is None else self.scores[user_idx, item_idx]


def cornac_protocol_inputs(train: Interactions, test: Interactions, threshold: float, W: np.ndarray):
    """What our side needs to reproduce Cornac's ranking_eval: ranked lists over Cornac's candidates.

    Candidates per user = items seen in training, minus the user's training *positives*
    (rating >= threshold); positives = test rows (users/items seen in training) rated >= threshold.
    W is a small dense score matrix (test-only; the engine's topk plays this role in the pipeline).
    """
    seen_items = np.zeros(train.n_items, dtype=bool)
    seen_items[train.items] = True
    train_pos = binarize(train, threshold).to_csr()
    positives = binarize(drop_unseen(test, train), threshold).to_csr()
    U = train.n_users
    ranked = np.full((U, train.n_items), -1, dtype=np.int64)
    scores = np.full(ranked.shape, -np.inf)
    n_cand = np.zeros(U, dtype=np.int64)
    for u in range(U):
        cand = seen_items.copy()
        cand[train_pos.indices[train_pos.indptr[u] : train_pos.indptr[u + 1]]] = False
        items = np.flatnonzero(cand)
        order = items[np.lexsort((items, -W[u, items]))]  # best first, ties to the lower id
        ranked[u, : len(order)] = order
        scores[u, : len(order)] = W[u, order]
        n_cand[u] = len(order)
    return ranked, scores, positives, n_cand


def run_cornac(train: Interactions, test: Interactions, threshold: float, W: np.ndarray, metrics):
    uid_map, iid_map = OrderedDict(), OrderedDict()
    triplets = lambda d: list(zip(d.users.tolist(), d.items.tolist(), d.ratings.tolist()))  # noqa: E731
    train_set = Dataset.build(
        triplets(train), fmt="UIR", global_uid_map=uid_map, global_iid_map=iid_map, exclude_unknowns=False
    )
    test_set = Dataset.build(
        triplets(test), fmt="UIR", global_uid_map=uid_map, global_iid_map=iid_map, exclude_unknowns=True
    )
    # Cornac index -> our code (the raw ids we gave Cornac are our codes)
    u_of = np.array([u for u, _ in sorted(train_set.uid_map.items(), key=lambda t: t[1])])
    i_of = np.array([i for i, _ in sorted(train_set.iid_map.items(), key=lambda t: t[1])])
    model = FixedScores(W[np.ix_(u_of, i_of)])
    model.fit(train_set)
    avg, per_user = ranking_eval(model, metrics, train_set, test_set, rating_threshold=threshold, exclude_unknowns=True)
    return dict(zip([m.name for m in metrics], avg)), len(per_user[0])


def random_ratings(seed, n_users=40, n_items=70, n=1100):
    rng = np.random.default_rng(seed)
    keys = np.unique(rng.integers(0, n_users, n) * n_items + rng.integers(0, n_items, n))
    keys = rng.permutation(keys)
    return Interactions(
        users=keys // n_items,
        items=keys % n_items,
        ratings=rng.integers(1, 6, len(keys)).astype(float),
        timestamps=None,
        user_map=IdMap(np.arange(n_users)),
        item_map=IdMap(np.arange(n_items)),
    )


@pytest.mark.parametrize("seed,threshold", [(0, 1.0), (1, 4.0), (2, 3.0)])
def test_matches_cornac_ranking_eval(seed, threshold):
    from cornac.metrics import AUC, MAP, MRR, NDCG, FMeasure, HitRatio, Precision, Recall

    data = random_ratings(seed)
    train, test = random_split(data, 0.2, seed=seed)
    W = np.random.default_rng(100 + seed).standard_normal((data.n_users, data.n_items))
    ranked, scores, positives, n_cand = cornac_protocol_inputs(train, test, threshold, W)
    ours = evaluate(ranked, positives, ks=[10], n_candidates=n_cand, scores=scores)

    # The protocol: AUC, MAP, NDCG@10, Precision@10, Recall@10 (+ F1, hit ratio).
    theirs, n_users = run_cornac(
        train, test, threshold, W, [AUC(), MAP(), NDCG(10), Precision(10), Recall(10), FMeasure(10), HitRatio(10)]
    )
    assert ours["n_users"] == n_users > 0
    # the helper builds the same candidates and positives as the hand-written loop above
    exclude, positives2, n_cand2 = cornac_protocol(train, test, threshold)
    assert (positives2 != positives).nnz == 0 and np.array_equal(n_cand2, n_cand)
    for u in range(data.n_users):
        listed = set(ranked[u][ranked[u] >= 0].tolist())
        assert listed.isdisjoint(exclude.indices[exclude.indptr[u] : exclude.indptr[u + 1]].tolist())
    pairs = {
        "auc": "AUC",
        "map": "MAP",
        "ndcg@10": "NDCG@10",
        "precision@10": "Precision@10",
        "recall@10": "Recall@10",
        "f1@10": "F1@10",
        "hit@10": "HitRatio@10",
    }
    for mine, name in pairs.items():
        assert ours[mine] == pytest.approx(theirs[name], rel=1e-12, abs=1e-12), mine
    # MRR alone (with an @k metric beside it Cornac only sorts the first max_k items, see report)
    theirs_mrr, _ = run_cornac(train, test, threshold, W, [MRR()])
    assert ours["mrr"] == pytest.approx(theirs_mrr["MRR"], rel=1e-12)


def test_protocol_with_the_engine():
    """The pipeline on the engine: full-catalogue topk with Cornac's exclusion, then evaluate."""
    from cornac.metrics import AUC, MAP, MRR, NDCG, Precision, Recall

    import mmrec_fast as mf

    data = random_ratings(7)
    train, test = random_split(data, 0.2, seed=7)
    rng = np.random.default_rng(7)
    users = rng.standard_normal((data.n_users, 8)).astype(np.float32)
    items = rng.standard_normal((data.n_items, 8)).astype(np.float32)
    exclude, positives, n_cand = cornac_protocol(train, test, 4.0)
    top = mf.topk(users, items, data.n_items, exclude=exclude)
    assert np.array_equal((top.indices >= 0).sum(axis=1), n_cand)
    ours = evaluate(top.indices, positives, ks=[10], n_candidates=n_cand, scores=top.scores)
    # Cornac scores every candidate with the engine's own float32 scores (read back from the full
    # ranking), so both sides rank identical numbers; excluded items are never Cornac candidates.
    W = np.zeros((data.n_users, data.n_items))
    rows = np.repeat(np.arange(data.n_users), data.n_items).reshape(top.indices.shape)
    listed = top.indices >= 0
    W[rows[listed], top.indices[listed]] = top.scores[listed]
    theirs, n_users = run_cornac(train, test, 4.0, W, [AUC(), MAP(), NDCG(10), Precision(10), Recall(10)])
    assert ours["n_users"] == n_users
    for mine, name in (
        ("auc", "AUC"),
        ("map", "MAP"),
        ("ndcg@10", "NDCG@10"),
        ("precision@10", "Precision@10"),
        ("recall@10", "Recall@10"),
    ):
        assert ours[mine] == pytest.approx(theirs[name], rel=1e-12), mine
    assert ours["mrr"] == pytest.approx(run_cornac(train, test, 4.0, W, [MRR()])[0]["MRR"], rel=1e-12)
