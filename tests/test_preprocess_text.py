"""Text preprocessing: normalisation, cleaning, stop words, model tokenisation."""

import pytest

from mmrec_fast.preprocess.text import (
    ENGLISH_STOP_WORDS,
    TextPreprocessor,
    clean_text,
    remove_stop_words,
    tokenize,
    word_tokens,
)


def test_unicode_normalisation_and_whitespace():
    # Full-width letters, a ligature and a non-breaking space fold to plain text under NFKC.
    assert clean_text("Ｆｕｌｌ\u00a0width  ﬁsh\n\tcake") == "Full width fish cake"
    assert clean_text("Ｆｕｌｌ", TextPreprocessor(unicode_form=None)) == "Ｆｕｌｌ"
    # Composed and decomposed accents give the same text.
    assert clean_text("cafe\u0301", TextPreprocessor(unicode_form="NFC")) == "café"


def test_html_urls_control_chars_and_case():
    raw = "<p>Great&nbsp;<b>red</b> sweater &amp; hat</p>\x00\x07 see https://shop.example/x"
    assert clean_text(raw) == "Great red sweater & hat see https://shop.example/x"
    assert clean_text(raw, TextPreprocessor(strip_urls=True, lowercase=True)) == "great red sweater & hat see"
    # A bare "<" is not a tag.
    assert clean_text("a < b > c") == "a < b > c"


def test_empty_and_non_string_inputs_raise():
    for bad in ["", "   \n", "<br/>", "\x00"]:
        with pytest.raises(ValueError, match="empty text"):
            clean_text(bad)
    with pytest.raises(TypeError, match="expected a str"):
        clean_text(None)
    with pytest.raises(ValueError, match="unicode_form"):
        TextPreprocessor(unicode_form="NFX")


def test_word_tokens_and_stop_words():
    tokens = word_tokens("The dog's toy isn't in the garden, it's ON the sofa!")
    assert tokens == ["the", "dog's", "toy", "isn't", "in", "the", "garden", "it's", "on", "the", "sofa"]
    assert remove_stop_words(tokens) == ["dog's", "toy", "isn't", "garden", "it's", "sofa"]
    assert remove_stop_words(["red", "sweater"], stop_words={"red"}) == ["sweater"]
    assert "the" in ENGLISH_STOP_WORDS and "sweater" not in ENGLISH_STOP_WORDS
    with pytest.raises(ValueError, match="stop_words"):
        remove_stop_words(tokens, stop_words="french")


def test_tokenize_with_model_tokenizer(tmp_path):
    pytest.importorskip("transformers", reason="model tokenisation needs transformers")
    from transformers import AutoTokenizer

    from mmrec_fast.encoders.testing import make_tiny_text_model

    tok = AutoTokenizer.from_pretrained(str(make_tiny_text_model(tmp_path)), local_files_only=True)
    enc = tokenize(["red sweater", "the blue cotton shirt and jeans " * 10], tok, max_length=12)
    assert enc["input_ids"].shape == (2, 12)  # padded to the longest, truncated at 12
    assert enc["attention_mask"][0].sum() == 4  # [CLS] red sweater [SEP]
    with pytest.raises(ValueError, match="max_length"):
        tokenize(["x"], tok, max_length=1)
