"""The live ItemIndex: external ids, add/update/remove/compact, snapshot reads, filters in external ids."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast.reference import topk_reference

# Kernels whose score of a (user, item) pair does not depend on the item's row position: ids and scores of
# a live index equal a fresh build's bit for bit before compaction too (BLAS tiles may round differently).
POSITION_EXACT = ["native", "numba"]
D = 6


def _vectors(rng, n):
    # Small integers: exact float32 dot products, so ties are real and the reference agrees exactly.
    return rng.integers(-3, 4, size=(n, D)).astype(np.float32)


def _random_history(rng, n_ops, fraction, backend="auto"):
    """A seeded sequence of writes; returns the (ids -> vector) content it leads to and the index."""
    ids0 = rng.choice(200, size=int(rng.integers(0, 30)), replace=False)
    content = {int(i): v for i, v in zip(ids0, _vectors(rng, ids0.size))}
    index = mf.ItemIndex(
        np.array(list(content.values()), np.float32).reshape(-1, D),
        ids=ids0,
        compact_fraction=fraction,
        backend=backend,
    )
    for _ in range(n_ops):
        op = rng.integers(4)
        live = np.array(sorted(content), dtype=np.int64)
        if op == 0 or live.size == 0:
            free = np.setdiff1d(np.arange(200), live)
            new = rng.choice(free, size=min(free.size, int(rng.integers(1, 6))), replace=False)
            vecs = _vectors(rng, new.size)
            index.add(new, vecs)
            content.update({int(i): v for i, v in zip(new, vecs)})
        elif op == 1:
            pick = rng.choice(live, size=int(rng.integers(1, min(5, live.size) + 1)), replace=False)
            vecs = _vectors(rng, pick.size)
            index.update(pick, vecs)
            content.update({int(i): v for i, v in zip(pick, vecs)})
        elif op == 2:
            pick = rng.choice(live, size=int(rng.integers(1, min(5, live.size) + 1)), replace=False)
            index.remove(pick)
            for i in pick:
                del content[int(i)]
        else:
            index.compact()
    return content, index


def _fresh(content, backend, shuffle_rng):
    ids = np.array(list(content), dtype=np.int64)
    order = shuffle_rng.permutation(ids.size)  # a fresh build in any order must give the same results
    vecs = np.array([content[int(i)] for i in ids], np.float32).reshape(-1, D)
    return mf.ItemIndex(vecs[order], ids=ids[order], backend=backend)


def _queries(rng, content, n_users=5):
    live = np.array(sorted(content), dtype=np.int64)
    users = _vectors(rng, n_users)
    some = lambda: rng.choice(np.arange(210), size=int(rng.integers(0, 12)), replace=False)  # noqa: E731
    return users, [
        {},
        {"exclude": [some() for _ in range(n_users)]},
        {"ban": some()},
        {"allow": some(), "exclude": [some() for _ in range(n_users)]},
        {"candidates": [some() for _ in range(n_users)], "ban": live[:2]},
        {"allow": np.zeros(0, np.int64)},  # every row all-filtered
    ]


def _reference(content, users, k, kw):
    """Float64 reference on the final content, filters applied in external ids by hand."""
    ids = np.array(sorted(content), dtype=np.int64)
    vecs = np.array([content[int(i)] for i in ids], np.float64).reshape(-1, D)
    n = users.shape[0]
    eligible = np.ones((n, ids.size), dtype=bool)
    if "allow" in kw:
        eligible &= np.isin(ids, kw["allow"])[None, :]
    if "ban" in kw:
        eligible &= ~np.isin(ids, kw["ban"])[None, :]
    for name in ("exclude", "candidates"):
        if name in kw:
            hit = np.stack([np.isin(ids, row) for row in kw[name]])
            eligible &= ~hit if name == "exclude" else hit
    rows, cols = np.nonzero(~eligible)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))])
    idx, sc, lse = topk_reference(users, vecs, k, excl_indptr=indptr, excl_indices=cols)
    return np.where(idx >= 0, ids[np.maximum(idx, 0)] if ids.size else -1, -1), sc, lse


@pytest.mark.parametrize("backend", POSITION_EXACT)
@pytest.mark.parametrize("seed", range(6))
def test_any_update_sequence_equals_a_fresh_build(backend, seed):
    rng = np.random.default_rng(seed)
    content, index = _random_history(rng, 25, fraction=0.5, backend=backend)  # tombstones + delta, mostly
    fresh = _fresh(content, backend, rng)
    users, queries = _queries(rng, content)
    for kw in queries:
        for k in (1, 4, 300):  # 300 > I: padding
            got, want = index.topk(users, k, **kw), fresh.topk(users, k, **kw)
            np.testing.assert_array_equal(got.indices, want.indices, err_msg=str(kw))
            np.testing.assert_array_equal(got.scores, want.scores)
            # The normaliser sums the same terms in another order (segments, tombstones): float32 rounding.
            np.testing.assert_allclose(got.log_normalizer, want.log_normalizer, rtol=1e-6, atol=1e-6)
            ref_idx, ref_sc, ref_lse = _reference(content, users, k, kw)
            np.testing.assert_array_equal(got.indices, ref_idx)
            np.testing.assert_array_equal(got.scores, ref_sc.astype(np.float32))
            np.testing.assert_allclose(got.log_normalizer, ref_lse, rtol=1e-5, atol=1e-5)
    index.compact()
    assert index.pending == 0
    for kw in queries:
        got, want = index.topk(users, 4, **kw), fresh.topk(users, 4, **kw)
        for a, b in ((got.indices, want.indices), (got.scores, want.scores), (got.log_normalizer, want.log_normalizer)):
            np.testing.assert_array_equal(a, b)  # after compaction: bit for bit, normaliser included


@pytest.mark.parametrize("backend", ["native", "numba", "numpy"])
@pytest.mark.parametrize("seed", range(4))
def test_compact_fraction_zero_is_always_bit_identical(backend, seed):
    rng = np.random.default_rng(100 + seed)
    ids0 = rng.choice(60, size=20, replace=False)
    vecs0 = rng.normal(size=(20, D)).astype(np.float32)
    index = mf.ItemIndex(vecs0, ids=ids0, backend=backend, compact_fraction=0)
    content = dict(zip(ids0.tolist(), vecs0))
    for _ in range(8):
        new = rng.choice(np.setdiff1d(np.arange(60), list(content)), size=3, replace=False)
        v = rng.normal(size=(3, D)).astype(np.float32)
        index.add(new, v)
        content.update(zip(new.tolist(), v))
        gone = rng.choice(list(content), size=2, replace=False)
        index.remove(gone)
        for g in gone:
            del content[int(g)]
        assert index.pending == 0
    fresh = _fresh(content, backend, rng)
    users = rng.normal(size=(7, D))
    exclude = [[int(i)] for i in rng.choice(60, 7)]
    got, want = index.topk(users, 5, exclude=exclude), fresh.topk(users, 5, exclude=exclude)
    for a, b in ((got.indices, want.indices), (got.scores, want.scores), (got.log_normalizer, want.log_normalizer)):
        np.testing.assert_array_equal(a, b)


def test_ties_go_to_the_lower_external_id_whatever_the_history():
    v = np.ones((1, D), np.float32)
    index = mf.ItemIndex(np.repeat(v, 3, axis=0), ids=[50, 10, 30], compact_fraction=10)
    index.add([5, 40], np.repeat(v, 2, axis=0))  # in the delta segment, below and between main ids
    index.update([10], v)  # moves id 10 to the delta
    top = index.topk(v, 5)
    assert top.indices.tolist() == [[5, 10, 30, 40, 50]]
    assert index.pending == 4  # one tombstone (old 10) + three delta rows (5, 40, new 10)
    index.remove([5])
    assert index.topk(v, 5).indices.tolist() == [[10, 30, 40, 50, -1]]


def test_frozen_usage_is_unchanged():
    rng = np.random.default_rng(0)
    items, users = rng.normal(size=(300, 8)), rng.normal(size=(4, 8))
    index = mf.ItemIndex(items)
    direct = mf.topk(users, items, 7)
    np.testing.assert_array_equal(index.topk(users, 7).indices, direct.indices)
    np.testing.assert_array_equal(mf.topk(users, index, 7).indices, direct.indices)
    assert index.ids.tolist() == list(range(300)) and index.version == 0
    # Explicit ids 0..I-1 are the positional index.
    assert mf.ItemIndex(items, ids=np.arange(300)).snapshot().plain


def test_positional_readers_refuse_a_live_index():
    index = mf.ItemIndex(np.eye(3), ids=[7, 8, 9])
    assert mf.topk(np.eye(3), index, 2).indices[:, 0].tolist() == [7, 8, 9]  # mf.topk is index.topk
    with pytest.raises(ValueError, match="items: this ItemIndex has external ids"):
        index.items  # noqa: B018
    with pytest.raises(ValueError, match="index.topk"):
        mf.score(np.eye(3), index)
    plain = mf.ItemIndex(np.eye(3))
    plain.remove([1])
    with pytest.raises(ValueError, match="not yet compacted"):
        plain.items  # noqa: B018
    plain.add([1], np.ones((1, 3)))
    plain.compact()
    assert plain.snapshot().plain and mf.topk(np.eye(3), plain, 1).indices.shape == (3, 1)


def test_filter_ids_the_index_does_not_hold_match_nothing():
    index = mf.ItemIndex(np.eye(3), ids=[7, 8, 9])
    u = np.array([[1.0, 2.0, 3.0]])
    assert index.topk(u, 3, exclude=[[9, 12345]]).indices.tolist() == [[8, 7, -1]]
    assert index.topk(u, 3, allow=[7, 99]).indices.tolist() == [[7, -1, -1]]
    assert index.topk(u, 3, ban=np.array([False, True, False])).indices.tolist() == [[9, 7, -1]]  # over index.ids
    top = index.topk(u, 2, allow=[])
    assert top.indices.tolist() == [[-1, -1]] and np.isneginf(top.log_normalizer).all()
    assert index.topk(u, 2, normalizer=False).log_normalizer is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda ix: ix.add([7], np.ones((1, 3))), "ids: id 7 is already in the index"),
        (lambda ix: ix.add([1, 1], np.ones((2, 3))), "ids: id 1 appears more than once"),
        (lambda ix: ix.add([-1], np.ones((1, 3))), "ids: id -1 is negative"),
        (lambda ix: ix.add([1], np.ones((2, 3))), "vectors: has 2 rows for 1 ids"),
        (lambda ix: ix.add([1], np.ones((1, 4))), "vectors: has 4 dimensions"),
        (lambda ix: ix.add([1], np.full((1, 3), np.nan)), "vectors: contains NaN"),
        (lambda ix: ix.add([1.5], np.ones((1, 3))), "ids: expected integer item ids"),
        (lambda ix: ix.update([1], np.ones((1, 3))), "ids: id 1 is not in the index"),
        (lambda ix: ix.remove([8, 2]), "ids: id 2 is not in the index"),
        (lambda ix: ix.remove([8, 8]), "ids: id 8 appears more than once"),
        (lambda ix: ix.topk(np.ones((1, 3)), 2, exclude=[[-4]]), r"exclude\[0\]: id -4 is negative"),
        (lambda ix: ix.topk(np.ones((1, 3)), 2, ban=np.ones(2, bool)), "ban: a boolean mask needs one entry"),
        (lambda ix: ix.vectors([1]), "ids: id 1 is not in the index"),
        (lambda ix: mf.ItemIndex(np.eye(3), ids=[1, 1, 2]), "ids: id 1 appears more than once"),
        (lambda ix: mf.ItemIndex(np.eye(3), ids=[1, 2]), "ids: has 2 ids for 3 rows"),
        (lambda ix: mf.ItemIndex(np.eye(3), compact_fraction=-1), "compact_fraction"),
    ],
)
def test_bad_writes_and_filters_name_the_argument(call, match):
    index = mf.ItemIndex(np.eye(3), ids=[7, 8, 9])
    before = (index.version, index.ids.tolist())
    with pytest.raises(ValueError, match=match):
        call(index)
    assert (index.version, index.ids.tolist()) == before  # nothing half-applied


def test_automatic_compaction_keeps_pending_below_the_fraction():
    rng = np.random.default_rng(3)
    index = mf.ItemIndex(rng.normal(size=(100, 4)), compact_fraction=0.1)
    for i in range(30):
        index.update([i], rng.normal(size=(1, 4)))
        assert index.pending <= 0.1 * len(index)
    assert index.version >= 30  # every write, and every compaction, is a new version


def test_vectors_and_contains_follow_updates():
    index = mf.ItemIndex(np.eye(2), ids=[3, 4], compact_fraction=5)
    index.update([4], [[5.0, 5.0]])
    index.add([1], [[2.0, 0.0]])
    np.testing.assert_array_equal(index.vectors([4, 1, 3]), [[5, 5], [2, 0], [1, 0]])
    assert 4 in index and 2 not in index and -1 not in index
    assert index.ids.tolist() == [1, 3, 4]


def test_readers_always_see_one_consistent_snapshot():
    rng = np.random.default_rng(11)
    n, users = 40, rng.normal(size=(8, D)).astype(np.float32)
    states = [rng.normal(size=(n, D)).astype(np.float32)]
    index = mf.ItemIndex(states[0], ids=np.arange(100, 100 + n), compact_fraction=0.3)
    # Each write updates a random subset; state v is fully known in advance.
    writes = []
    for _ in range(30):
        pick = np.sort(rng.choice(n, size=int(rng.integers(1, 8)), replace=False))
        vecs = rng.normal(size=(pick.size, D)).astype(np.float32)
        nxt = states[-1].copy()
        nxt[pick] = vecs
        states.append(nxt)
        writes.append((pick + 100, vecs))
    expected = [mf.ItemIndex(s, ids=np.arange(100, 100 + n)).topk(users, 5) for s in states]
    keys = {(e.indices.tobytes(), e.scores.tobytes()) for e in expected}
    seen, errors, done = [], [], threading.Event()

    def reader():
        try:
            while not done.is_set():
                got = index.topk(users, 5)
                seen.append((got.indices.tobytes(), got.scores.tobytes()))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for ids, vecs in writes:
        index.update(ids, vecs)
    done.set()
    for t in threads:
        t.join()
    assert not errors
    assert seen and all(s in keys for s in seen)
    final = index.topk(users, 5)
    np.testing.assert_array_equal(final.indices, expected[-1].indices)


def test_mf_topk_on_a_live_index_speaks_external_ids():
    """mf.topk(users, index) is index.topk(users): external ids, live segments, filters in external ids."""
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(40, 6)).astype(np.float32)
    ids = rng.choice(10_000, size=40, replace=False).astype(np.int64)
    index = mf.ItemIndex(vectors[:30], ids=ids[:30], backend="numpy")
    index.add(ids[30:], vectors[30:])  # a pending delta segment
    index.remove(ids[:3])  # tombstones
    users = rng.normal(size=(4, 6)).astype(np.float32)
    ban = ids[5:9]
    got = mf.topk(users, index, 7, ban=ban)
    want = index.topk(users, 7, ban=ban)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.log_normalizer, want.log_normalizer)
    assert not np.isin(got.indices, np.concatenate([ids[:3], ban])).any()
    assert np.isin(got.indices, ids[3:]).all()
