"""Per-modality preprocessing for the encoders (text, image, audio).

Submodules import their heavy dependencies (Pillow, soundfile, scipy.signal, noisereduce) lazily,
so ``import mmrec_fast.preprocess`` costs nothing.
"""

from .text import ENGLISH_STOP_WORDS, TextPreprocessor, clean_text, remove_stop_words, tokenize, word_tokens

__all__ = ["TextPreprocessor", "clean_text", "word_tokens", "remove_stop_words", "tokenize", "ENGLISH_STOP_WORDS"]
