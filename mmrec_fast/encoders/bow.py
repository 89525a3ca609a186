"""Bag-of-words baseline: hashed word counts (stop words removed), optional IDF, L2-normalised.

The classical baseline the transformer text encoder is compared against: no model, no weights,
deterministic. Words come from :func:`~mmrec_fast.preprocess.text.word_tokens` after the same
cleaning as the transformer path; stop words are removed (they dominate raw counts); each word is
hashed (BLAKE2b, stable across processes, unlike Python's ``hash``) into ``dim`` buckets with a
sign bit, so collisions cancel on average instead of piling up. ``fit`` learns IDF weights.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import numpy as np

from ..preprocess.text import TextPreprocessor, remove_stop_words, word_tokens
from .base import Encoder, check_on_error, check_positive_int
from .cache import EmbeddingCache

__all__ = ["BagOfWordsEncoder"]


class BagOfWordsEncoder(Encoder):
    """Hashed bag-of-words text vectors.

    Parameters
    ----------
    dim : int
        Number of hash buckets (vector width).
    stop_words : "english", iterable of str or None
        Words to drop (``None`` keeps every word).
    sublinear_tf : bool
        Use ``1 + log(count)`` instead of raw counts.
    preprocessor : TextPreprocessor
        Cleaning before tokenisation.
    cache_dir, on_error : as for :class:`~mmrec_fast.encoders.TextEncoder`.
    """

    chunk_size = 100_000

    def __init__(
        self,
        dim: int = 4096,
        *,
        stop_words="english",
        sublinear_tf: bool = True,
        preprocessor: TextPreprocessor | None = TextPreprocessor(),
        cache_dir=None,
        on_error: str = "raise",
    ):
        self._dim = check_positive_int(dim, "dim")
        self.stop_words = stop_words if stop_words is None or isinstance(stop_words, str) else frozenset(stop_words)
        if isinstance(self.stop_words, str) and self.stop_words != "english":
            raise ValueError(f"stop_words: 'english', a collection of words or None, got {stop_words!r}")
        self.sublinear_tf = bool(sublinear_tf)
        self.preprocessor = preprocessor
        self.on_error = check_on_error(on_error)
        self.idf: np.ndarray | None = None
        self.name = f"bag-of-words-{self._dim}"
        self.batch_size = 1024
        self.cache = None if cache_dir is None else EmbeddingCache(cache_dir, self.settings(), self.dim)

    @property
    def dim(self) -> int:
        """Vector width (hash buckets)."""
        return self._dim

    def settings(self) -> dict:
        """Everything that changes the output (IDF included, by digest)."""
        idf = None if self.idf is None else hashlib.sha256(self.idf.tobytes()).hexdigest()[:16]
        stop = (
            self.stop_words if self.stop_words is None or isinstance(self.stop_words, str) else sorted(self.stop_words)
        )
        return {
            "kind": "bow",
            "name": self.name,
            "stop_words": stop,
            "sublinear_tf": self.sublinear_tf,
            "idf": idf,
            "preprocess": None if self.preprocessor is None else self.preprocessor.settings(),
        }

    def _tokens(self, text: str) -> list[str]:
        tokens = word_tokens(text)
        return tokens if self.stop_words is None else remove_stop_words(tokens, self.stop_words)

    def _bucket(self, word: str) -> tuple[int, float]:
        h = int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")
        return h % self._dim, (1.0 if (h >> 63) & 1 else -1.0)

    def fit(self, texts: Iterable[str]) -> BagOfWordsEncoder:
        """Learn smoothed IDF weights ``log((1 + n) / (1 + df)) + 1`` from a corpus."""
        df = np.zeros(self._dim, dtype=np.float64)
        n = 0
        for text in texts:
            clean = self.preprocessor(text) if self.preprocessor is not None else text
            df[list({self._bucket(w)[0] for w in self._tokens(clean)})] += 1
            n += 1
        if n == 0:
            raise ValueError("texts: fit needs at least one text")
        self.idf = (np.log((1 + n) / (1 + df)) + 1).astype(np.float32)
        self.cache = None if self.cache is None else EmbeddingCache(self.cache.root, self.settings(), self.dim)
        return self

    def _content_hash(self, item) -> bytes:
        if not isinstance(item, str):
            raise TypeError(f"expected a str, got {type(item).__name__}")
        return item.encode("utf-8", "surrogatepass")

    def _prepare(self, item) -> list[str]:
        clean = self.preprocessor(item) if self.preprocessor is not None else item
        tokens = self._tokens(clean)
        if not tokens:
            raise ValueError("no words left after stop-word removal")
        return tokens

    def _embed(self, prepared: list, advance: Callable[[int], None]) -> np.ndarray:
        out = np.zeros((len(prepared), self._dim), dtype=np.float32)
        for row, tokens in enumerate(prepared):
            counts: dict[int, float] = {}
            for w in tokens:
                b, sign = self._bucket(w)
                counts[b] = counts.get(b, 0.0) + sign
            for b, c in counts.items():
                mag = abs(c)
                if mag == 0:
                    continue
                tf = 1.0 + np.log(mag) if self.sublinear_tf else mag
                out[row, b] = np.sign(c) * tf * (1.0 if self.idf is None else self.idf[b])
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        out /= np.maximum(norms, 1e-12)
        advance(len(prepared))
        return out
