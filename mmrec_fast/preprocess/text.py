"""Text preprocessing: Unicode normalisation, cleaning, model tokenisation, stop words.

The transformer path needs little: :class:`TextPreprocessor` normalises Unicode (NFKC by default:
compatibility forms such as full-width letters, ligatures and non-breaking spaces fold to what the
tokenizer's vocabulary knows), strips HTML tags and entities, drops control characters and collapses
whitespace. For ordinary text these steps are no-ops, so embeddings equal those of the model's
reference implementation. Stop-word removal is for the bag-of-words baseline only: a transformer
reads function words as part of the sentence and does better with them kept.
"""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

__all__ = ["TextPreprocessor", "clean_text", "word_tokens", "remove_stop_words", "tokenize", "ENGLISH_STOP_WORDS"]

_TAG = re.compile(r"</?[A-Za-z][^<>]*>")  # an HTML tag, not a bare "<" in "a < b"
_URL = re.compile(r"(?:https?://|www\.)\S+")
_WS = re.compile(r"\s+")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")  # letters/digits, inner apostrophes kept ("don't")

# A compact English list (articles, pronouns, auxiliaries, prepositions, conjunctions): the usual
# core of the NLTK/scikit-learn lists, without content words such as "computer" or "system".
ENGLISH_STOP_WORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
    ]
)


@dataclass(frozen=True)
class TextPreprocessor:
    """Settings for :func:`clean_text` (part of the embedding cache key).

    Parameters
    ----------
    unicode_form : {"NFKC", "NFC", "NFKD", "NFD"} or None
        Unicode normalisation form; ``None`` keeps the text as given.
    strip_html : bool
        Remove HTML tags and decode entities (``&amp;`` -> ``&``).
    strip_urls : bool
        Remove URLs (they carry little meaning for an item description).
    lowercase : bool
        Lower-case the text (off by default: the tokenizer applies its own casing rule).
    collapse_whitespace : bool
        Replace runs of whitespace (newlines, tabs, NBSP) by one space and strip the ends.
    """

    unicode_form: str | None = "NFKC"
    strip_html: bool = True
    strip_urls: bool = False
    lowercase: bool = False
    collapse_whitespace: bool = True

    def __post_init__(self):
        if self.unicode_form not in (None, "NFC", "NFKC", "NFD", "NFKD"):
            raise ValueError(
                f"unicode_form: must be one of None, 'NFC', 'NFKC', 'NFD', 'NFKD', got {self.unicode_form!r}"
            )

    def __call__(self, text) -> str:
        return clean_text(text, self)

    def settings(self) -> dict:
        """The settings as a plain dictionary (for cache keys)."""
        return asdict(self)


def clean_text(text, preprocessor: TextPreprocessor | None = None) -> str:
    """Normalise and clean one text.

    Parameters
    ----------
    text : str
        The raw text.
    preprocessor : TextPreprocessor, optional
        Settings; default ``TextPreprocessor()``.

    Returns
    -------
    str
        The cleaned text.

    Raises
    ------
    TypeError
        ``text`` is not a string (``None``, a number ...).
    ValueError
        The text is empty or only whitespace/markup after cleaning: there is nothing to embed.
    """
    p = preprocessor or TextPreprocessor()
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    if p.unicode_form is not None:
        text = unicodedata.normalize(p.unicode_form, text)
    if p.strip_html:
        text = html.unescape(_TAG.sub(" ", text))
    if p.strip_urls:
        text = _URL.sub(" ", text)
    # Control characters (category C*, except whitespace handled below) are invisible noise that
    # some tokenizers map to [UNK].
    if any(unicodedata.category(ch)[0] == "C" and not ch.isspace() for ch in text):
        text = "".join(ch for ch in text if ch.isspace() or unicodedata.category(ch)[0] != "C")
    if p.lowercase:
        text = text.lower()
    if p.collapse_whitespace:
        text = _WS.sub(" ", text).strip()
    if not text.strip():
        raise ValueError("empty text (nothing left to embed after cleaning)")
    return text


def word_tokens(text: str, *, lowercase: bool = True) -> list[str]:
    """Split text into word tokens (letters/digits, inner apostrophes kept) for bag-of-words."""
    if lowercase:
        text = text.lower()
    return _WORD.findall(text)


def remove_stop_words(tokens: Iterable[str], stop_words: Iterable[str] | str = "english") -> list[str]:
    """Drop stop words from a token list.

    Parameters
    ----------
    tokens : iterable of str
        Word tokens (lower-cased for the built-in list).
    stop_words : "english" or iterable of str
        The built-in :data:`ENGLISH_STOP_WORDS` or a custom list.
    """
    if isinstance(stop_words, str):
        if stop_words != "english":
            raise ValueError(f"stop_words: 'english' or a collection of words, got {stop_words!r}")
        stop = ENGLISH_STOP_WORDS
    else:
        stop = frozenset(stop_words)
    return [t for t in tokens if t not in stop]


def tokenize(texts: Sequence[str], tokenizer, *, max_length: int, return_tensors: str = "pt"):
    """Tokenise a batch with a transformers tokenizer, padded to the batch's longest text.

    Truncation keeps the first ``max_length`` tokens (including the special tokens), the same
    rule as sentence-transformers (``truncation="longest_first"``).
    """
    if not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length: must be an integer >= 2, got {max_length!r}")
    return tokenizer(
        list(texts), padding=True, truncation="longest_first", max_length=max_length, return_tensors=return_tensors
    )
