"""IdMap, Interactions and the loaders (tiny files in tmp dirs, and the real RecBole ML-100K)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from mmrec_fast.data import IdMap, Interactions, load_grouplens, load_interactions, load_movielens_100k


# ---------------------------------------------------------------------------------------------
# IdMap
# ---------------------------------------------------------------------------------------------
def test_idmap_sorted_codes_independent_of_order():
    a = IdMap([30, 10, 20, 10])
    b = IdMap([20, 30, 10])
    assert a == b and len(a) == 3
    assert a.encode([10, 20, 30]).tolist() == [0, 1, 2]
    assert a.decode(np.array([2, 0])).tolist() == [30, 10]
    assert a.encode(20) == 1


def test_idmap_integers_sort_numerically_strings_lexicographically():
    assert IdMap([9, 10, 100]).decode([0, 1, 2]).tolist() == [9, 10, 100]
    assert IdMap(["9", "10", "b"]).decode([0, 1, 2]).tolist() == ["10", "9", "b"]


def test_idmap_unknown_ids_named():
    m = IdMap(["a", "b"], name="item")
    with pytest.raises(ValueError, match=r"item ids: 6 unknown id\(s\).*'x'.*and 1 more"):
        m.encode(["a", "x", "y", "z", "w", "v", "u"])
    with pytest.raises(ValueError, match="string ids but got numeric"):
        m.encode([1])
    with pytest.raises(ValueError, match="out of range"):
        m.decode([2])
    with pytest.raises(ValueError, match="all integers or all strings"):
        IdMap(np.array([1, "a"], dtype=object))


@pytest.mark.parametrize("ids", [[5, 1, 3], ["u2", "u10", "u1"]])
def test_idmap_roundtrip(tmp_path, ids):
    m = IdMap(ids, name="user")
    again = IdMap.from_json(m.to_json())
    assert again == m and again.name == "user"
    m.save(tmp_path / "map.json")
    loaded = IdMap.load(tmp_path / "map.json")
    assert loaded == m
    assert loaded.encode(ids).tolist() == m.encode(ids).tolist()
    with pytest.raises(ValueError, match="not an IdMap JSON"):
        IdMap.from_json("[1, 2]")


# ---------------------------------------------------------------------------------------------
# Interactions
# ---------------------------------------------------------------------------------------------
def _tiny(ratings=True, times=True, users=(0, 0, 1, 2, 2), items=(1, 0, 2, 0, 1)):
    n = len(users)
    return Interactions(
        users=np.array(users),
        items=np.array(items),
        ratings=np.arange(1, n + 1, dtype=float) if ratings else None,
        timestamps=np.arange(n) * 10 if times else None,
        user_map=IdMap([10, 20, 30]),
        item_map=IdMap(["a", "b", "c", "d"]),
    )


def test_interactions_basics_and_csr():
    d = _tiny()
    assert (d.n_users, d.n_items, len(d)) == (3, 4, 5)
    assert d.users.dtype == np.int64 and d.ratings.dtype == np.float32 and d.timestamps.dtype == np.int64
    m = d.to_csr()
    assert isinstance(m, sp.csr_matrix) and m.shape == (3, 4) and m.has_sorted_indices
    assert m.toarray().tolist() == [[1, 1, 0, 0], [0, 0, 1, 0], [1, 1, 0, 0]]
    r = d.to_csr("ratings").toarray()
    assert r[0].tolist() == [2, 1, 0, 0] and r[2].tolist() == [4, 5, 0, 0]
    # sorted indices really are sorted
    assert all(np.all(np.diff(m.indices[m.indptr[i] : m.indptr[i + 1]]) > 0) for i in range(3))


def test_interactions_duplicates_in_csr():
    d = _tiny(users=(0, 0, 1, 0), items=(1, 1, 2, 1))
    assert d.n_duplicates() == 2
    assert d.to_csr().toarray()[0].tolist() == [0, 1, 0, 0]  # ones: membership
    with pytest.raises(ValueError, match="duplicates: 2 repeated"):
        d.to_csr("ratings")
    assert d.to_csr("ratings", duplicates="last")[0, 1] == 4
    assert d.to_csr("ratings", duplicates="first")[0, 1] == 1
    assert d.to_csr("ratings", duplicates="max")[0, 1] == 4
    assert d.to_csr("ratings", duplicates="sum")[0, 1] == 7


def test_interactions_validation():
    with pytest.raises(ValueError, match="users: codes must lie in 0..2"):
        _tiny(users=(0, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="items: length"):
        Interactions(np.array([0, 1]), np.array([0]), None, None, IdMap([1, 2]), IdMap([1]))
    with pytest.raises(ValueError, match="ratings: 1 missing"):
        Interactions(np.array([0]), np.array([0]), np.array([np.nan]), None, IdMap([1]), IdMap([1]))
    with pytest.raises(ValueError, match="values: 'ratings' requested"):
        _tiny(ratings=False).to_csr("ratings")


def test_subset_keeps_maps():
    d = _tiny()
    s = d.subset(d.users == 2)
    assert len(s) == 2 and s.user_map is d.user_map and s.n_items == 4
    assert s.ratings.tolist() == [4, 5]
    assert len(d.subset(np.array([0, 4]))) == 2
    with pytest.raises(ValueError, match="mask"):
        d.subset(np.ones(3, dtype=bool))


# ---------------------------------------------------------------------------------------------
# generic loader
# ---------------------------------------------------------------------------------------------
FRAME = pd.DataFrame(
    {"uid": ["u1", "u2", "u1", "u3"], "iid": [5, 7, 7, 5], "stars": [4.0, 3.5, 1.0, 5.0], "ts": [100, 200, 300, 400]}
)


@pytest.mark.parametrize("fmt", ["csv", "tsv", "parquet", "csv.gz", "txt"])
def test_load_interactions_formats(tmp_path, fmt):
    path = tmp_path / f"log.{fmt}"
    if fmt == "parquet":
        pytest.importorskip("pyarrow")
        FRAME.to_parquet(path)
    else:
        FRAME.to_csv(path, sep="\t" if fmt in ("tsv", "txt") else ",", index=False)
    d = load_interactions(
        path, user_col="uid", item_col="iid", rating_col="stars", time_col="ts", sep="\t" if fmt == "txt" else None
    )
    assert (len(d), d.n_users, d.n_items) == (4, 3, 2)
    assert d.user_map.decode(d.users).tolist() == ["u1", "u2", "u1", "u3"]
    assert d.item_map.decode(d.items).tolist() == [5, 7, 7, 5]
    assert d.ratings.tolist() == [4.0, 3.5, 1.0, 5.0] and d.timestamps.tolist() == [100, 200, 300, 400]
    implicit = load_interactions(path, user_col="uid", item_col="iid", sep="\t" if fmt == "txt" else None)
    assert implicit.ratings is None and implicit.timestamps is None


def test_load_interactions_date_strings(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("u,i,when\n1,2,2020-01-01T00:00:00Z\n1,3,2020-01-02\n")
    d = load_interactions(path, user_col="u", item_col="i", time_col="when")
    assert d.timestamps.tolist() == [1577836800, 1577923200]


def test_load_interactions_bad_data(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty"):
        load_interactions(empty, user_col="u", item_col="i")
    header = tmp_path / "header.csv"
    header.write_text("u,i\n")
    with pytest.raises(ValueError, match=r"header\.csv: no interaction rows"):
        load_interactions(header, user_col="u", item_col="i")
    good = tmp_path / "log.csv"
    FRAME.to_csv(good, index=False)
    with pytest.raises(ValueError, match=r"log\.csv: missing column\(s\) \['rating'\]"):
        load_interactions(good, user_col="uid", item_col="iid", rating_col="rating")
    with pytest.raises(ValueError, match=r"log\.csv: column 'uid' has 1 missing id"):
        pd.DataFrame({"uid": ["a", None], "iid": [1, 2]}).to_csv(good, index=False)
        load_interactions(good, user_col="uid", item_col="iid")
    pd.DataFrame({"uid": ["a", "b"], "iid": [1, 2], "r": ["5", "five"]}).to_csv(good, index=False)
    with pytest.raises(ValueError, match=r"column 'r' has 1 missing or non-numeric rating.*'five'"):
        load_interactions(good, user_col="uid", item_col="iid", rating_col="r")
    with pytest.raises(ValueError, match="sep: cannot tell the separator"):
        load_interactions(_copy(good, tmp_path / "log.dat"), user_col="uid", item_col="iid")
    with pytest.raises(ValueError, match="is not a file"):
        load_interactions(tmp_path / "nope.csv", user_col="uid", item_col="iid")
    bad_parquet = tmp_path / "bad.parquet"
    bad_parquet.write_text("not parquet")
    with pytest.raises(ValueError, match=r"bad\.parquet: not a readable Parquet"):
        load_interactions(bad_parquet, user_col="uid", item_col="iid")


def _copy(src, dst):
    dst.write_bytes(src.read_bytes())
    return dst


def test_load_interactions_duplicates(tmp_path):
    path = tmp_path / "dups.csv"
    path.write_text("u,i,r\n1,2,1\n1,2,5\n2,2,3\n1,2,4\n")
    with pytest.raises(ValueError, match=r"dups\.csv: 2 repeated \(u, i\) row.*\(1, 2\).*duplicates='first'"):
        load_interactions(path, user_col="u", item_col="i", rating_col="r")
    first = load_interactions(path, user_col="u", item_col="i", rating_col="r", duplicates="first")
    last = load_interactions(path, user_col="u", item_col="i", rating_col="r", duplicates="last")
    keep = load_interactions(path, user_col="u", item_col="i", rating_col="r", duplicates="keep")
    assert first.ratings.tolist() == [1, 3] and last.ratings.tolist() == [3, 4] and len(keep) == 4
    with pytest.raises(ValueError, match="duplicates: expected one of"):
        load_interactions(path, user_col="u", item_col="i", duplicates="sum")


# ---------------------------------------------------------------------------------------------
# MovieLens: GroupLens layout (tiny fake) and the RecBole copy (real)
# ---------------------------------------------------------------------------------------------
def _write_grouplens(folder):
    folder.mkdir()
    (folder / "u.data").write_text("1\t10\t5\t881250949\n2\t10\t3\t881250950\n1\t20\t4\t881250951\n")
    flags = ["0"] * 19
    f1 = flags.copy()
    f1[3] = f1[5] = "1"  # Animation, Comedy
    f2 = flags.copy()
    f2[0] = "1"  # unknown
    (folder / "u.item").write_bytes(
        (
            "10|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(f1) + "\n"
            '20|Caf\xe9 "Odd" Title|01-Jan-1990||http://y|' + "|".join(f2) + "\n"
            "30|Never Rated (1970)|||http://z|" + "|".join(flags) + "\n"
        ).encode("latin-1")
    )
    (folder / "u.user").write_text("1|24|M|technician|85711\n2|53|F|other|94043\n")


def test_load_grouplens(tmp_path):
    folder = tmp_path / "ml-100k"
    _write_grouplens(folder)
    d = load_grouplens(folder)
    assert (len(d), d.n_users, d.n_items) == (3, 2, 3)  # item 30 has features but no rating: still coded
    feats = d.item_features
    assert feats.loc[0, "title"] == "Toy Story" and feats.loc[0, "year"] == 1995
    assert feats.loc[0, "genres"] == ["Animation", "Comedy"]
    assert feats.loc[1, "title"] == 'Caf\xe9 "Odd" Title' and feats.loc[1, "year"] == 1990
    assert d.user_features.loc[1, "occupation"] == "other" and d.user_features.loc[0, "age"] == 24
    # load_movielens_100k accepts the same directory
    assert load_movielens_100k(folder).to_csr().nnz == 3
    with pytest.raises(ValueError, match="has no u.data"):
        load_grouplens(tmp_path)
    with pytest.raises(ValueError, match="neither ml-100k.inter"):
        load_movielens_100k(tmp_path)


def test_load_grouplens_bad(tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "u.data").write_text("")
    with pytest.raises(ValueError, match=r"u\.data: the file is empty"):
        load_grouplens(folder)
    (folder / "u.data").write_text("1\t2\n")
    with pytest.raises(ValueError, match="expected 4 tab-separated columns"):
        load_grouplens(folder)


def test_recbole_atomic_tiny(tmp_path):
    folder = tmp_path / "atomic"
    folder.mkdir()
    (folder / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\n1\t2\t3\n")
    with pytest.raises(ValueError, match=r"ml-100k\.inter: missing column 'timestamp'"):
        load_movielens_100k(folder)


@pytest.fixture(scope="module")
def ml100k():
    pytest.importorskip("recbole", reason="ML-100K ships inside recbole (pip install --no-deps recbole==1.2.1)")
    return load_movielens_100k()


def test_real_movielens_100k(ml100k):
    d = ml100k
    assert (len(d), d.n_users, d.n_items) == (100_000, 943, 1682)
    assert d.n_duplicates() == 0
    assert set(np.unique(d.ratings).tolist()) == {1, 2, 3, 4, 5}
    assert d.timestamps.min() > 8e8
    m = d.to_csr("ratings")
    assert m.shape == (943, 1682) and m.nnz == 100_000 and m.has_sorted_indices
    # raw ids 1..943 / 1..1682 map to codes 0..n-1 (sorted numerically)
    assert d.user_map.decode([0, 942]).tolist() == [1, 943]
    assert d.item_map.encode([1, 1682]).tolist() == [0, 1681]
    toy = d.item_features.loc[d.item_map.encode(1)]
    assert toy["title"] == "Toy Story" and toy["year"] == 1995
    assert toy["genres"] == ["Animation", "Children's", "Comedy"]
    assert d.user_features.loc[d.user_map.encode(1), "occupation"] == "technician"
    # user 196 rated item 242 with 3 (first line of the file)
    assert m[d.user_map.encode(196), d.item_map.encode(242)] == 3


def test_load_interactions_bad_dates(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("u,i,when\n1,2,2020-01-01\n1,3,yesterday\n")
    with pytest.raises(
        ValueError, match=r"column 'when' holds values that are neither numbers nor dates \(e\.g\. 'yesterday'\)"
    ):
        load_interactions(path, user_col="u", item_col="i", time_col="when")
