"""Ranking metrics: hand-computed cases, an independent loop implementation on random data, and
Cornac 3.0.1's metric classes as the external reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from mmrec_fast.metrics import ALL_METRICS, candidate_counts, evaluate, evaluate_per_user


def csr(rows, n_items):
    """CSR from a list of per-user positive item lists."""
    indptr = np.cumsum([0] + [len(r) for r in rows])
    indices = np.array([i for r in rows for i in r], dtype=np.int64)
    return sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), n_items))


# ---------------------------------------------------------------------------------------------
# hand-computed cases
# ---------------------------------------------------------------------------------------------
def test_hand_computed_single_user():
    # 6 candidates ranked 5 3 0 1 4 2; relevant {3, 4, 9 is not a candidate here}
    ranked = np.array([[5, 3, 0, 1, 4, 2]])
    pos = csr([[3, 4]], 10)
    r = evaluate(ranked, pos, ks=[1, 2, 3], n_candidates=6)
    d = [1 / math.log2(p + 2) for p in range(6)]
    assert r["n_users"] == 1
    assert r["precision@1"] == 0 and r["precision@2"] == 0.5 and r["precision@3"] == pytest.approx(1 / 3)
    assert r["recall@2"] == 0.5 and r["recall@3"] == 0.5
    assert r["f1@2"] == pytest.approx(2 * 0.5 * 0.5 / 1.0)
    assert r["f1@1"] == 0
    assert r["hit@1"] == 0 and r["hit@2"] == 1
    assert r["ndcg@2"] == pytest.approx(d[1] / (d[0] + d[1]))
    assert r["ndcg@3"] == pytest.approx(d[1] / (d[0] + d[1]))
    assert r["mrr@1"] == 0 and r["mrr@2"] == 0.5
    assert r["map@3"] == pytest.approx((1 / 2) / 2)
    # full ranking: hits at positions 1 and 4 (0-based)
    assert r["mrr"] == 0.5
    assert r["map"] == pytest.approx((1 / 2 + 2 / 5) / 2)
    # negatives: 5,0,1,2 (4). Positive at 1 beats 0,1,2 (3); positive at 4 beats 2 (1) -> 4/8
    assert r["auc"] == pytest.approx(4 / 8)
    assert r["coverage@2"] == pytest.approx(2 / 10)


def test_hand_computed_two_users_and_skipped_user():
    ranked = np.array([[0, 1, 2], [2, 1, 0], [1, 0, 2]])
    pos = csr([[0], [], [0, 2]], 3)  # user 1 has no held-out positive: skipped
    r = evaluate(ranked, pos, ks=[1, 5], n_candidates=3)
    assert r["n_users"] == 2
    # user 0: hit at 0. user 2: hits at 1 and 2.
    assert r["precision@1"] == pytest.approx((1 + 0) / 2)
    assert r["precision@5"] == pytest.approx((1 / 5 + 2 / 5) / 2)  # Cornac: always / k
    assert r["recall@5"] == 1.0
    assert r["ndcg@1"] == pytest.approx(0.5)
    d = [1 / math.log2(p + 2) for p in range(3)]
    assert r["ndcg@5"] == pytest.approx((1 + (d[1] + d[2]) / (d[0] + d[1])) / 2)
    assert r["mrr"] == pytest.approx((1 + 1 / 2) / 2)
    assert r["map"] == pytest.approx((1 + (1 / 2 + 2 / 3) / 2) / 2)
    # user 0: 1 pos vs 2 neg, wins both -> 1; user 2: negative item 1 is first -> 0
    assert r["auc"] == pytest.approx((1 + 0) / 2)
    assert r["coverage@1"] == pytest.approx(2 / 3)  # items 0 and 1 (user 1 is not evaluated)
    per = evaluate_per_user(ranked, pos, ks=[1], n_candidates=3)
    assert per["evaluated"].tolist() == [True, False, True]
    assert np.isnan(per["precision@1"][1]) and per["precision@1"][0] == 1
    assert per["n_pos"].tolist() == [1, 0, 2]


def test_padding_means_complete_and_shorter_lists():
    # user 0 has 2 eligible items (padding), K=4 < k=5
    ranked = np.array([[1, 0, -1, -1]])
    pos = csr([[0, 3]], 4)  # item 3 positive but excluded (not a candidate)
    r = evaluate(ranked, pos, ks=[1, 5])
    assert r["precision@5"] == pytest.approx(1 / 5) and r["recall@5"] == 0.5
    assert r["map"] == pytest.approx(1 / 2)  # over the 1 positive among the candidates
    assert r["auc"] == 0.0 and r["mrr"] == 0.5


def test_auc_undefined_is_left_out():
    ranked = np.array([[0, 1], [0, 1]])
    pos = csr([[0, 1], [1]], 2)  # user 0: no negatives -> AUC undefined
    r = evaluate(ranked, pos, ks=[1], n_candidates=2)
    per = evaluate_per_user(ranked, pos, ks=[1], n_candidates=2)
    assert np.isnan(per["auc"][0]) and per["auc"][1] == 0
    assert r["auc"] == 0.0 and r["n_users"] == 2


def test_ties_follow_cornac_with_scores():
    ranked = np.array([[0, 1, 2, 3]])
    scores = np.array([[3.0, 2.0, 2.0, 1.0]])
    pos = csr([[2]], 4)
    strict = evaluate(ranked, pos, ks=[1], n_candidates=4)
    tied = evaluate(ranked, pos, ks=[1], n_candidates=4, scores=scores)
    assert strict["auc"] == pytest.approx(1 / 3) and tied["auc"] == pytest.approx(1 / 3)
    pos = csr([[1]], 4)  # positive tied with negative item 2 (listed after it)
    assert evaluate(ranked, pos, ks=[1], n_candidates=4)["auc"] == pytest.approx(2 / 3)
    assert evaluate(ranked, pos, ks=[1], n_candidates=4, scores=scores)["auc"] == pytest.approx(1 / 3)
    # MAP: rank of the tied positive is its last tied position (3), not 2
    assert evaluate(ranked, pos, ks=[1], n_candidates=4)["map"] == pytest.approx(1 / 2)
    assert evaluate(ranked, pos, ks=[1], n_candidates=4, scores=scores)["map"] == pytest.approx(1 / 3)
    # a tie group never runs into the padding, whatever score the padding slots hold
    r = evaluate(np.array([[0, 1, -1]]), csr([[1]], 3), ks=[1], scores=np.array([[1.0, 0.0, 0.0]]))
    assert r["map"] == pytest.approx(1 / 2) and r["auc"] == 0.0


# ---------------------------------------------------------------------------------------------
# incomplete lists and bad input
# ---------------------------------------------------------------------------------------------
def test_incomplete_lists_omit_or_raise_full_metrics():
    ranked = np.array([[0, 1], [2, 3]])
    pos = csr([[1], [0]], 10)
    r = evaluate(ranked, pos, ks=[2])
    assert "auc" not in r and "map" not in r and "mrr" not in r and "precision@2" in r
    with pytest.raises(ValueError, match=r"metrics: \['auc'\] need the full ranking"):
        evaluate(ranked, pos, ks=[2], metrics=["auc"])
    with pytest.raises(ValueError, match="metrics: 'mrr' needs the rank"):
        evaluate(ranked, pos, ks=[2], metrics=["mrr"])
    # MRR is known when each incomplete list contains a hit
    assert evaluate(ranked[:1], pos[:1], ks=[2], metrics=["mrr"])["mrr"] == 0.5
    with pytest.raises(ValueError, match="ks: k=5 exceeds the list length K=2"):
        evaluate(ranked, pos, ks=[5])
    # n_candidates says the lists are complete
    r = evaluate(ranked, pos, ks=[5], n_candidates=2)
    # user 0: its negative (item 0) is ranked above its positive -> 0; user 1's positive is not a
    # candidate -> AUC undefined, left out of the mean; MAP and MRR count it as 0
    assert r["auc"] == 0.0 and r["map"] == pytest.approx(0.25) and r["mrr"] == pytest.approx(0.25)
    assert r["precision@5"] == pytest.approx(0.1)


def test_bad_input_errors():
    pos = csr([[1]], 4)
    with pytest.raises(ValueError, match="ranked: expected a 2-D array"):
        evaluate(np.array([0, 1]), pos)
    with pytest.raises(ValueError, match="ranked: expected integer item ids"):
        evaluate(np.array([[0.0, 1.0]]), pos)
    with pytest.raises(ValueError, match=r"ranked: item ids must lie in 0..3"):
        evaluate(np.array([[0, 4]]), pos)
    with pytest.raises(ValueError, match="padding must be trailing"):
        evaluate(np.array([[-1, 1]]), pos)
    with pytest.raises(ValueError, match="lists item 1 more than once"):
        evaluate(np.array([[1, 1]]), pos)
    with pytest.raises(ValueError, match="positives: expected a scipy.sparse"):
        evaluate(np.array([[0, 1]]), np.array([[0, 1, 0, 0]]))
    with pytest.raises(ValueError, match="positives: has 1 rows but ranked has 2"):
        evaluate(np.array([[0, 1], [1, 2]]), pos)
    with pytest.raises(ValueError, match="positives: has 4 columns but n_items=5"):
        evaluate(np.array([[0, 1]]), pos, n_items=5)
    with pytest.raises(ValueError, match="ks: every k must be an integer >= 1"):
        evaluate(np.array([[0, 1]]), pos, ks=[0])
    with pytest.raises(ValueError, match=r"metrics: unknown name\(s\) \['ndgc'\]"):
        evaluate(np.array([[0, 1]]), pos, metrics=["ndgc"])
    with pytest.raises(ValueError, match="n_candidates: user 0 has 1 candidate"):
        evaluate(np.array([[0, 1]]), pos, n_candidates=1)
    with pytest.raises(ValueError, match=r"n_candidates: expected an int or shape \(1,\)"):
        evaluate(np.array([[0, 1]]), pos, n_candidates=[1, 2])
    with pytest.raises(ValueError, match=r"scores: expected shape \(1, 2\)"):
        evaluate(np.array([[0, 1]]), pos, scores=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="scores: row 0 is not sorted"):
        evaluate(np.array([[0, 1]]), pos, scores=np.array([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="scores: row 0 holds NaN"):
        evaluate(np.array([[0, 1]]), pos, scores=np.array([[1.0, np.nan]]))


def test_no_evaluated_users_gives_nan():
    r = evaluate(np.array([[0, 1]]), csr([[]], 2), ks=[1], n_candidates=2)
    assert r["n_users"] == 0 and math.isnan(r["precision@1"]) and math.isnan(r["auc"])


def test_candidate_counts():
    ex = csr([[0, 1], [], [2]], 5)
    assert candidate_counts(5, ex).tolist() == [3, 5, 4]
    assert candidate_counts(5, n_users=2).tolist() == [5, 5]
    with pytest.raises(ValueError, match="exclude: has 5 columns but n_items=6"):
        candidate_counts(6, ex)


# ---------------------------------------------------------------------------------------------
# an independent, loop-based implementation (plain Python, written from the definitions)
# ---------------------------------------------------------------------------------------------
def reference_user(row, positives, ks, n_items, scores=None):
    """All metrics for one user; ``row`` is the (complete or not) list, ``positives`` a set."""
    lst = [int(x) for x in row if x >= 0]
    n_pos = len(positives)
    out = {}
    for k in ks:
        top = lst[:k]
        tp = sum(1 for x in top if x in positives)
        p, r = tp / k, tp / n_pos
        out[f"precision@{k}"] = p
        out[f"recall@{k}"] = r
        out[f"f1@{k}"] = 2 * p * r / (p + r) if p + r > 0 else 0.0
        out[f"hit@{k}"] = 1.0 if tp else 0.0
        dcg = sum(1 / math.log2(i + 2) for i, x in enumerate(top) if x in positives)
        idcg = sum(1 / math.log2(i + 2) for i in range(min(n_pos, k)))
        out[f"ndcg@{k}"] = dcg / idcg
        first = next((i for i, x in enumerate(top) if x in positives), None)
        out[f"mrr@{k}"] = 0.0 if first is None else 1 / (first + 1)
        seen, acc = 0, 0.0
        for i, x in enumerate(top):
            if x in positives:
                seen += 1
                acc += seen / (i + 1)
        out[f"map@{k}"] = acc / min(n_pos, k)
    # full ranking (meaningful when lst is complete)
    sc = list(scores[: len(lst)]) if scores is not None else [-i for i in range(len(lst))]
    rel = [x in positives for x in lst]
    first = next((i for i, x in enumerate(rel) if x), None)
    out["mrr"] = 0.0 if first is None else 1 / (first + 1)
    ap = []
    for i in range(len(lst)):
        if rel[i]:
            rank = sum(1 for j in range(len(lst)) if sc[j] >= sc[i])
            rank_pos = sum(1 for j in range(len(lst)) if rel[j] and sc[j] >= sc[i])
            ap.append(rank_pos / rank)
    out["map"] = sum(ap) / len(ap) if ap else 0.0
    negs = [sc[j] for j in range(len(lst)) if not rel[j]]
    poss = [sc[j] for j in range(len(lst)) if rel[j]]
    wins = sum(1 for a in poss for b in negs if a > b)
    out["auc"] = wins / (len(poss) * len(negs)) if poss and negs else float("nan")
    return out


def reference_evaluate(ranked, pos_rows, ks, n_items, scores=None):
    per = [
        reference_user(ranked[u], set(pos_rows[u]), ks, n_items, None if scores is None else scores[u])
        for u in range(len(ranked))
        if pos_rows[u]
    ]
    res = {}
    for key in per[0]:
        vals = [p[key] for p in per if not (key == "auc" and math.isnan(p[key]))]
        res[key] = sum(vals) / len(vals) if vals else float("nan")
    for k in ks:
        items = {int(x) for u in range(len(ranked)) if pos_rows[u] for x in ranked[u][:k] if x >= 0}
        res[f"coverage@{k}"] = len(items) / n_items
    res["n_users"] = len(per)
    return res


def random_case(rng, n_users, n_items, K, *, tie_levels=None, exclude_density=0.2, pos_density=0.1):
    """Complete rankings of each user's candidates (catalogue minus excluded), truncated to K."""
    ranked = np.full((n_users, K), -1, dtype=np.int64)
    scores = np.full((n_users, K), -np.inf)
    ranks_full, pos_rows, n_cand = [], [], []
    for u in range(n_users):
        excluded = rng.random(n_items) < exclude_density
        cand = np.flatnonzero(~excluded)
        s = rng.integers(0, tie_levels, len(cand)).astype(float) if tie_levels else rng.random(len(cand))
        order = np.lexsort((cand, -s))  # descending score, ties to the lower id (engine rule)
        full = cand[order]
        ranks_full.append((full, s[order]))
        n_cand.append(len(cand))
        ranked[u, : min(K, len(full))] = full[:K]
        scores[u, : min(K, len(full))] = s[order][:K]
        # positives: mostly candidates, sometimes an excluded item, sometimes none at all
        p = np.flatnonzero(rng.random(n_items) < pos_density)
        if u % 7 == 3:
            p = p[:0]
        pos_rows.append(sorted(set(p.tolist())))
    return ranked, scores, pos_rows, np.array(n_cand), ranks_full


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("K_mode", ["full", "short"])
def test_against_loop_reference(seed, K_mode):
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 30
    K = n_items if K_mode == "full" else 8
    ranked, scores, pos_rows, n_cand, _ = random_case(rng, n_users, n_items, K, tie_levels=4 if seed % 2 else None)
    pos = csr(pos_rows, n_items)
    ks = [1, 3, 5, 8] + ([10, 40] if K_mode == "full" else [])
    use_scores = scores if seed % 2 else None
    got = evaluate(ranked, pos, ks=ks, n_candidates=n_cand, scores=use_scores)
    want = reference_evaluate(ranked, pos_rows, ks, n_items, None if use_scores is None else scores)
    if K_mode == "short":
        assert "auc" not in got and "map" not in got
        want = {k: v for k, v in want.items() if k not in ("auc", "map", "mrr")}
        got.pop("mrr", None)  # present only when every list holds a hit; checked below
    assert set(got) == set(want)
    for key in want:
        assert got[key] == pytest.approx(want[key], rel=1e-12, abs=1e-12), key


def test_per_user_matches_reference():
    rng = np.random.default_rng(11)
    ranked, scores, pos_rows, n_cand, _ = random_case(rng, 25, 20, 20, tie_levels=3)
    pos = csr(pos_rows, 20)
    per = evaluate_per_user(ranked, pos, ks=[2, 5], n_candidates=n_cand, scores=scores)
    for u in range(25):
        if not pos_rows[u]:
            assert not per["evaluated"][u] and np.isnan(per["ndcg@5"][u])
            continue
        want = reference_user(ranked[u], set(pos_rows[u]), [2, 5], 20, scores[u])
        for key, val in want.items():
            np.testing.assert_allclose(per[key][u], val, rtol=1e-12, err_msg=key)


def test_block_boundaries(monkeypatch):
    """Results do not depend on the user-block size of the hit search (1, 3 or all users)."""
    import mmrec_fast.metrics.ranking as ranking

    rng = np.random.default_rng(3)
    ranked, scores, pos_rows, n_cand, _ = random_case(rng, 17, 12, 12)
    pos = csr(pos_rows, 12)
    base = evaluate(ranked, pos, ks=[1, 4], n_candidates=n_cand)
    for entries in (12, 36):
        monkeypatch.setattr(ranking, "_SCRATCH_ENTRIES", entries)
        assert evaluate(ranked, pos, ks=[1, 4], n_candidates=n_cand) == pytest.approx(base)
        bad = ranked.copy()
        bad[16, 1] = bad[16, 0]  # a repeat in the last block names its row
        with pytest.raises(ValueError, match=f"row 16 lists item {bad[16, 0]} more than once"):
            evaluate(bad, pos, ks=[1])


def test_metrics_subset_and_names():
    rng = np.random.default_rng(5)
    ranked, _, pos_rows, n_cand, _ = random_case(rng, 10, 10, 10)
    r = evaluate(ranked, csr(pos_rows, 10), ks=10, n_candidates=n_cand, metrics=["ndcg", "auc"])
    assert set(r) == {"ndcg@10", "auc", "n_users"}
    full = evaluate(ranked, csr(pos_rows, 10), ks=(5, 10), n_candidates=n_cand)
    assert {"mrr@5", "map@10", "coverage@5", "auc", "map", "mrr"} <= set(full)
    assert len(ALL_METRICS) == 11


# ---------------------------------------------------------------------------------------------
# Cornac's own metric classes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed,ties", [(0, None), (1, 3), (2, None), (3, 5)])
def test_against_cornac_metric_classes(seed, ties):
    cm = pytest.importorskip("cornac.metrics")
    rng = np.random.default_rng(seed)
    n_users, n_items, K = 30, 25, 25
    ranked, scores, pos_rows, n_cand, full = random_case(
        rng, n_users, n_items, K, tie_levels=ties, exclude_density=0.15, pos_density=0.15
    )
    # Cornac always ranks every positive: make each positive a candidate (drop excluded ones).
    pos_rows = [[i for i in pos_rows[u] if i in set(full[u][0].tolist())] for u in range(n_users)]
    pos = csr(pos_rows, n_items)
    ks = [1, 5, 10]
    ours = evaluate(ranked, pos, ks=ks, n_candidates=n_cand, scores=scores)
    mets = {
        **{f"ndcg@{k}": cm.NDCG(k) for k in ks},
        **{f"precision@{k}": cm.Precision(k) for k in ks},
        **{f"recall@{k}": cm.Recall(k) for k in ks},
        **{f"f1@{k}": cm.FMeasure(k) for k in ks},
        **{f"hit@{k}": cm.HitRatio(k) for k in ks},
        "auc": cm.AUC(),
        "map": cm.MAP(),
        "mrr": cm.MRR(),
    }
    sums = dict.fromkeys(mets, 0.0)
    n = 0
    for u in range(n_users):
        if not pos_rows[u]:
            continue
        n += 1
        items, s = full[u]
        gt_pos = np.array(pos_rows[u])
        gt_neg = np.setdiff1d(items, gt_pos)
        # Cornac's ranking_eval: item_indices = the candidates, pd_scores aligned with them.
        item_indices = np.sort(items)
        pd_scores = s[np.argsort(items)]
        for key, metric in mets.items():
            sums[key] += metric.compute(
                gt_pos=gt_pos, gt_neg=gt_neg, pd_rank=items, pd_scores=pd_scores, item_indices=item_indices
            )
    assert ours["n_users"] == n
    for key in mets:
        assert ours[key] == pytest.approx(sums[key] / n, rel=1e-12, abs=1e-12), key


# ---------------------------------------------------------------------------------------------
# full-catalogue MovieLens-100K, all metrics at 5/10/20 (timed in benchmarks/, not here)
# ---------------------------------------------------------------------------------------------
def test_movielens_full_catalogue_evaluation():
    # Correctness at full size only; its time is measured in benchmarks/movielens_vs_cornac.py,
    # never asserted in a test (the CI machine is shared and noisy).
    pytest.importorskip("recbole", reason="ML-100K ships inside recbole (pip install --no-deps recbole==1.2.1)")
    import mmrec_fast as mf
    from mmrec_fast.data import load_movielens_100k, random_split

    data = load_movielens_100k()
    train, test = random_split(data, 0.2, seed=0)
    seen = train.to_csr()
    rng = np.random.default_rng(0)
    users = rng.standard_normal((data.n_users, 32)).astype(np.float32)
    items = rng.standard_normal((data.n_items, 32)).astype(np.float32)
    top = mf.topk(users, items, data.n_items, exclude=seen)  # every eligible item, ranked
    held_out = test.to_csr()
    n_cand = candidate_counts(data.n_items, seen)
    result = evaluate(top.indices, held_out, ks=(5, 10, 20), n_candidates=n_cand, scores=top.scores)
    assert result["n_users"] == len(np.unique(test.users))
    assert {"auc", "map", "mrr", "ndcg@20", "coverage@5", "f1@10"} <= set(result)
    assert 0.45 < result["auc"] < 0.55  # random embeddings: chance level
