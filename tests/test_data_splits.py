"""Splits and filters: no leakage, union = all, seeds reproducible, leave-last-out takes the latest,
k-core reaches its fixed point."""

from __future__ import annotations

import numpy as np
import pytest

from mmrec_fast.data import (
    IdMap,
    Interactions,
    binarize,
    compact,
    drop_unseen,
    k_core,
    leave_last_out,
    random_split,
    temporal_split,
)


def random_log(seed=0, n_users=30, n_items=40, n=600, dup_frac=0.0, tied_times=False):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, n)
    items = rng.integers(0, n_items, n)
    if not dup_frac:  # distinct pairs
        keys = np.unique(users * n_items + items)
        users, items = keys // n_items, keys % n_items
        perm = rng.permutation(len(keys))
        users, items = users[perm], items[perm]
    n = len(users)
    times = rng.integers(0, 50, n) if tied_times else rng.permutation(n) * 7 + 1000
    return Interactions(
        users=users,
        items=items,
        ratings=rng.integers(1, 6, n).astype(float),
        timestamps=times,
        user_map=IdMap(np.arange(n_users) * 3 + 100, name="user"),
        item_map=IdMap([f"i{j:03d}" for j in range(n_items)], name="item"),
    )


def rows_of(d):
    """Multiset of full rows (user, item, rating, time) as a sorted list of tuples."""
    return sorted(zip(d.users.tolist(), d.items.tolist(), d.ratings.tolist(), d.timestamps.tolist()))


def assert_partition(data, train, test):
    assert train.user_map is data.user_map and test.item_map is data.item_map
    assert len(train) + len(test) == len(data)
    assert sorted(rows_of(train) + rows_of(test)) == rows_of(data)


@pytest.mark.parametrize("dup_frac", [0.0, 1.0])
def test_random_split_partition_no_leakage_reproducible(dup_frac):
    data = random_log(1, dup_frac=dup_frac, n=900)
    train, test = random_split(data, 0.25, seed=42)
    assert_partition(data, train, test)
    # no (user, item) pair on both sides, even with repeated rows
    assert not set(train.pair_keys().tolist()) & set(test.pair_keys().tolist())
    n_pairs = len(np.unique(data.pair_keys()))
    assert len(np.unique(test.pair_keys())) == int(np.ceil(0.25 * n_pairs))
    again_train, again_test = random_split(data, 0.25, seed=42)
    assert np.array_equal(again_test.pair_keys(), test.pair_keys())
    other = random_split(data, 0.25, seed=43)[1]
    assert not np.array_equal(other.pair_keys(), test.pair_keys())
    # a Generator works as the seed, and an int count as the size
    assert len(random_split(data, 10, seed=np.random.default_rng(0))[1]) >= 10


def test_split_sizes_validated():
    data = random_log(2)
    for bad in (0.0, 1.0, -0.1, 1.5, 0, len(data), "0.2", True):
        with pytest.raises(ValueError, match="test_size"):
            random_split(data, bad, seed=0)


def test_temporal_split_global_cut():
    data = random_log(3, tied_times=True)
    train, test = temporal_split(data, 0.2)
    assert_partition(data, train, test)
    assert len(test) == int(np.ceil(0.2 * len(data)))
    assert train.timestamps.max() <= test.timestamps.min()
    # deterministic: same result twice
    assert np.array_equal(temporal_split(data, 0.2)[1].pair_keys(), test.pair_keys())
    with pytest.raises(ValueError, match="needs timestamps"):
        temporal_split(Interactions(data.users, data.items, None, None, data.user_map, data.item_map))


@pytest.mark.parametrize("n", [1, 2])
def test_leave_last_out_takes_the_latest(n):
    data = random_log(4, tied_times=True)
    train, test = leave_last_out(data, n)
    assert_partition(data, train, test)
    counts = np.bincount(data.users, minlength=data.n_users)
    for u in range(data.n_users):
        rows = np.flatnonzero(data.users == u)
        got = np.flatnonzero(test.users == u)
        if counts[u] <= n:
            assert len(got) == 0  # too few rows: all stay in train
            continue
        assert len(got) == n
        # the n latest, ties broken by log order (later row = later)
        order = rows[np.lexsort((rows, data.timestamps[rows]))]
        want = sorted(zip(data.items[order[-n:]].tolist(), data.timestamps[order[-n:]].tolist()))
        assert sorted(zip(test.items[got].tolist(), test.timestamps[got].tolist())) == want
        assert test.timestamps[got].min() >= train.timestamps[train.users == u].max()
    with pytest.raises(ValueError, match="n: expected an integer >= 1"):
        leave_last_out(data, 0)


def test_leave_last_out_tie_break_is_log_order():
    d = Interactions(
        users=np.array([0, 0, 0]),
        items=np.array([2, 0, 1]),
        ratings=None,
        timestamps=np.array([5, 9, 9]),
        user_map=IdMap([1]),
        item_map=IdMap([1, 2, 3]),
    )
    _, test = leave_last_out(d)
    assert test.items.tolist() == [1]  # the later row among the tied latest two


def test_drop_unseen():
    data = random_log(5)
    train, test = random_split(data, 0.5, seed=0)
    kept = drop_unseen(test, train)
    seen_items = set(train.items.tolist())
    assert all(i in seen_items for i in kept.items.tolist())
    assert set(kept.users.tolist()) <= set(train.users.tolist())
    with pytest.raises(ValueError, match="share train's id maps"):
        drop_unseen(random_log(6, n_items=5), train)


def test_binarize():
    data = random_log(7)
    pos = binarize(data, 4)
    assert len(pos) == int((data.ratings >= 4).sum()) and pos.ratings.min() >= 4
    with pytest.raises(ValueError, match="needs ratings"):
        binarize(Interactions(data.users, data.items, None, None, data.user_map, data.item_map), 4)
    with pytest.raises(ValueError, match="threshold"):
        binarize(data, "high")


def naive_k_core(data, uk, ik):
    """Remove one violating user or item at a time until none is left (the k-core is unique)."""
    pairs = set(zip(data.user_map.decode(data.users).tolist(), data.item_map.decode(data.items).tolist()))
    while True:
        ucount, icount = {}, {}
        for u, i in pairs:
            ucount[u] = ucount.get(u, 0) + 1
            icount[i] = icount.get(i, 0) + 1
        bad_u = next((u for u, c in ucount.items() if c < uk), None)
        if bad_u is not None:
            pairs = {(u, i) for u, i in pairs if u != bad_u}
            continue
        bad_i = next((i for i, c in icount.items() if c < ik), None)
        if bad_i is None:
            return pairs
        pairs = {(u, i) for u, i in pairs if i != bad_i}


@pytest.mark.parametrize("uk,ik", [(1, 1), (5, 3), (8, 8), (7, 10)])
def test_k_core_fixed_point(uk, ik):
    data = random_log(8, n_users=60, n_items=50, n=700)
    want = naive_k_core(data, uk, ik)
    if not want:
        with pytest.raises(ValueError, match="is empty"):
            k_core(data, uk, ik)
        return
    core = k_core(data, uk, ik)
    raw = set(zip(core.user_map.decode(core.users).tolist(), core.item_map.decode(core.items).tolist()))
    assert raw == want
    ucount = np.bincount(core.users, minlength=core.n_users)
    icount = np.bincount(core.items, minlength=core.n_items)
    assert ucount.min() >= uk and icount.min() >= ik  # compacted: every id has rows
    # maps follow the surviving raw ids; rows keep their raw ids
    raw_before = set(zip(data.user_map.decode(data.users).tolist(), data.item_map.decode(data.items).tolist()))
    raw_after = set(zip(core.user_map.decode(core.users).tolist(), core.item_map.decode(core.items).tolist()))
    assert raw_after <= raw_before
    # maximality: the core is the largest such subset -- every dropped row touches an id that
    # could not survive (check by re-running on the core: nothing changes)
    assert len(k_core(core, uk, ik)) == len(core)
    kept_maps = k_core(data, uk, ik, compact_ids=False)
    assert kept_maps.user_map is data.user_map and len(kept_maps) == len(core)


def test_k_core_iterates():
    # user 0 has items {0,1}; item 1 is only liked by user 0 and user 1; user 1 has only item 1.
    # (2, 2)-core: user 1 (1 row) goes -> item 1 drops to 1 -> goes -> user 0 drops to 1 -> goes ...
    d = Interactions(
        users=np.array([0, 0, 1, 2, 3, 2, 3]),
        items=np.array([0, 1, 1, 2, 2, 3, 3]),
        ratings=None,
        timestamps=None,
        user_map=IdMap([0, 1, 2, 3]),
        item_map=IdMap([0, 1, 2, 3]),
    )
    core = k_core(d, 2, 2)
    assert core.user_map.ids.tolist() == [2, 3] and core.item_map.ids.tolist() == [2, 3]
    assert len(core) == 4
    with pytest.raises(ValueError, match="is empty"):
        k_core(d, 5, 5)
    with pytest.raises(ValueError, match="user_k"):
        k_core(d, 0, 1)


def test_compact_reindexes_features():
    import pandas as pd

    d = Interactions(
        users=np.array([0, 2]),
        items=np.array([1, 1]),
        ratings=None,
        timestamps=None,
        user_map=IdMap([5, 6, 7]),
        item_map=IdMap(["a", "b"]),
        item_features=pd.DataFrame({"title": ["A", "B"]}, index=[0, 1]),
    )
    c = compact(d)
    assert c.user_map.ids.tolist() == [5, 7] and c.item_map.ids.tolist() == ["b"]
    assert c.users.tolist() == [0, 1] and c.item_features["title"].tolist() == ["B"]


def test_real_movielens_splits():
    pytest.importorskip("recbole")
    from mmrec_fast.data import load_movielens_100k

    data = load_movielens_100k()
    train, test = random_split(data, 0.2, seed=0)
    assert (len(train), len(test)) == (80_000, 20_000)
    train, test = leave_last_out(data)
    assert len(test) == 943 and train.to_csr().multiply(test.to_csr()).nnz == 0
