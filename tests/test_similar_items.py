"""similar_items ("more like this") and ItemIndex save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast import _index_cache
from mmrec_fast.reference import topk_reference
from mmrec_fast.similar import similar_items, unit_rows


def _expected(vectors, ids, queries, k, exclude_self, metric):
    vecs = unit_rows(vectors).astype(np.float64) if metric == "cosine" else vectors.astype(np.float64)
    q = vecs[np.searchsorted(ids, queries)]
    indptr = np.arange(len(queries) + 1) if exclude_self else np.zeros(len(queries) + 1, np.int64)
    indices = np.searchsorted(ids, queries) if exclude_self else np.zeros(0, np.int64)
    idx, sc, lse = topk_reference(q, vecs, k, excl_indptr=indptr, excl_indices=indices)
    return np.where(idx >= 0, ids[np.maximum(idx, 0)], -1), sc, lse


@pytest.mark.parametrize("metric", ["dot", "cosine"])
@pytest.mark.parametrize("exclude_self", [True, False])
def test_matches_the_reference_on_a_live_index(metric, exclude_self):
    rng = np.random.default_rng(0)
    # Rows with 1 or 4 entries of +-1 (norm 1 or 2): unit rows and cosines are exact in float32, so the
    # many ties are real and the float64 reference orders them the same way.
    vectors = rng.choice([-1.0, 1.0], size=(80, 5)).astype(np.float32)
    vectors[np.arange(80), rng.integers(0, 5, 80)] = 0.0
    single = rng.random(80) < 0.4
    vectors[single] = 0.0
    vectors[single, rng.integers(0, 5, int(single.sum()))] = rng.choice([-1.0, 1.0], int(single.sum()))
    vectors[3] = 0.0  # a zero row: cosine 0 to everything
    ids = np.arange(80) * 3 + 1
    index = mf.ItemIndex(vectors[::-1], ids=ids[::-1], compact_fraction=1.0)
    index.update(ids[:5], vectors[:5])  # same content, now in the delta segment
    queries = ids[[0, 3, 10, 79, 10]]
    for k in (1, 7, 100):
        got = index.similar_items(queries, k, metric=metric, exclude_self=exclude_self)
        want_idx, want_sc, want_lse = _expected(vectors, ids, queries, k, exclude_self, metric)
        np.testing.assert_array_equal(got.indices, want_idx)
        np.testing.assert_allclose(got.scores, want_sc, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(got.log_normalizer, want_lse, rtol=1e-5, atol=1e-5)
    if exclude_self:
        assert not (got.indices == queries[:, None]).any()


def test_filters_compose_with_exclude_self():
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.8, 0.2], [0.0, 1.0]])
    index = mf.ItemIndex(items, ids=[10, 11, 12, 13])
    top = index.similar_items([10], 4, ban=[11], exclude=[[13]])
    assert top.indices.tolist() == [[12, -1, -1, -1]]
    top = index.similar_items([10], 2, allow=[10, 13], metric="cosine")
    assert top.indices.tolist() == [[13, -1]]
    assert np.isneginf(index.similar_items([10], 1, allow=[10]).log_normalizer).all()  # only itself: nothing


def test_raw_array_packs_once_and_errors_are_named():
    _index_cache.clear_index_cache()
    items = np.random.default_rng(1).normal(size=(50, 4)).astype(np.float32)
    first = mf.similar_items(items, [0, 1], 3, metric="cosine")
    cached = _index_cache.cached_index(items)
    assert _index_cache.cached_index(items) is cached
    np.testing.assert_array_equal(similar_items(items, [0, 1], 3, metric="cosine").indices, first.indices)
    assert _index_cache.cached_index(items) is cached  # the cosine copy too lives on that index
    items[0] += 1.0  # an in-place edit of a sampled row is seen: a new index
    assert _index_cache.cached_index(items) is not cached
    with pytest.raises(ValueError, match="item_ids: id 50 is not in the index"):
        mf.similar_items(items, [50], 3)
    with pytest.raises(ValueError, match="metric"):
        mf.similar_items(items, [0], 3, metric="l2")
    with pytest.raises(ValueError, match="k"):
        mf.similar_items(items, [0], 0)
    with pytest.raises(TypeError, match="exclude_self"):
        mf.similar_items(items, [0], 3, exclude_self="yes")


def test_cosine_copy_is_reused_across_writes_that_do_not_touch_main():
    rng = np.random.default_rng(2)
    index = mf.ItemIndex(rng.normal(size=(30, 4)), compact_fraction=1.0)
    index.similar_items([0], 3, metric="cosine")
    main = index.snapshot().main
    unit = main.cache["cosine"]
    index.add([100], rng.normal(size=(1, 4)))
    index.similar_items([100], 3, metric="cosine")
    assert index.snapshot().main is main and main.cache["cosine"] is unit


# -- save / load --


def test_save_load_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    index = mf.ItemIndex(rng.normal(size=(40, 6)), ids=rng.choice(1000, 40, replace=False), compact_fraction=1.0)
    index.remove(index.ids[:3])
    index.add([5000, 7], rng.normal(size=(2, 6)))
    users = rng.normal(size=(5, 6))
    want = index.topk(users, 8, ban=[7])
    path = index.save(tmp_path / "ix")
    for mmap in (True, False):
        loaded = mf.ItemIndex.load(path, mmap=mmap)
        got = loaded.topk(users, 8, ban=[7])
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.scores, want.scores)
        np.testing.assert_allclose(got.log_normalizer, want.log_normalizer, rtol=1e-6)
        np.testing.assert_array_equal(loaded.ids, index.ids)
    loaded.add([1], rng.normal(size=(1, 6)))  # a loaded (memory-mapped) index stays live
    assert 1 in loaded


def test_save_never_replaces_what_it_did_not_write(tmp_path):
    index = mf.ItemIndex(np.eye(3))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(ValueError, match="path: .* not a saved item index"):
        index.save(tmp_path / "mine", overwrite=True)
    (tmp_path / "file").write_text("keep")
    with pytest.raises(ValueError, match="existing file"):
        index.save(tmp_path / "file", overwrite=True)
    index.save(tmp_path / "ix")
    with pytest.raises(ValueError, match="overwrite=True"):
        index.save(tmp_path / "ix")
    index.add([9], np.ones((1, 3)))
    index.save(tmp_path / "ix", overwrite=True)
    assert mf.ItemIndex.load(tmp_path / "ix").ids.tolist() == [0, 1, 2, 9]
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep" and (tmp_path / "file").read_text() == "keep"


@pytest.mark.parametrize("damage", ["flip", "truncate", "manifest", "missing", "shape"])
def test_damaged_saves_are_refused(tmp_path, damage):
    path = mf.ItemIndex(np.random.default_rng(4).normal(size=(20, 4))).save(tmp_path / "ix")
    items = path / "items.npy"
    if damage == "flip":
        data = bytearray(items.read_bytes())
        data[-3] ^= 0xFF
        items.write_bytes(bytes(data))
    elif damage == "truncate":
        items.write_bytes(items.read_bytes()[:-40])
    elif damage == "manifest":
        (path / "manifest.json").write_text("{not json")
    elif damage == "missing":
        (path / "ids.npy").unlink()
    else:
        manifest = json.loads((path / "manifest.json").read_text())
        manifest["arrays"]["items"]["shape"] = [21, 4]
        (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="path: "):
        mf.ItemIndex.load(path)
    if damage == "truncate":  # without the checksum the reader still refuses a short file
        with pytest.raises(ValueError, match="path: items.npy .* cannot be read"):
            mf.ItemIndex.load(path, verify=False)
