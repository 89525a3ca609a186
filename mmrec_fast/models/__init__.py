"""Recommender models that hand user and item vectors to the engine.

- :class:`BPRMF` -- BPR matrix factorisation (torch, CPU or GPU).
- :class:`HybridMF` -- ID embeddings + a learned projection of each content modality (VBPR-style).
- :class:`ContentProfile` -- a user is the weighted mean of their items' content vectors.
- :class:`EASE` -- closed-form item-item model (Steck 2019), catalogues up to 20,000 items.
- :class:`IALS` -- implicit ALS (numba, multi-threaded) with fold-in of new users;
  :class:`ContentIALS` adds a content -> factor map so new items are scorable from content alone.
- :class:`EASEIALSBlend` -- EASE and iALS blended into one model (score blocks ``ease`` / ``ials``).
- :class:`MostPop` -- popularity, the floor of every table.

All expose ``user_vectors()``, ``item_vectors()`` and ``blocks()`` (how a score splits into ID,
per-modality and bias parts); :func:`save_model` / :func:`load_model` round-trip them exactly.

EASE, iALS, MostPop, the content profile and the blend need only the core install; BPR-MF and the hybrid
model need ``pip install "mmrec_fast[models]"`` (torch; model files need its safetensors) and are
imported on first use, so ``import mmrec_fast.models`` never imports torch.
"""

from .base import Recommender, ScoreBlock
from .blend import EASEIALSBlend
from .config import TrainConfig
from .content import ContentProfile
from .ease import EASE
from .ials import IALS, ContentIALS
from .io import SavedModel, load_model, save_model
from .popularity import MostPop

# name -> submodule; those submodules import torch (the [models] extra).
_LAZY = {
    "BPRMF": ".factor",
    "HybridMF": ".factor",
    "FactorModel": ".factor",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Recommender",
    "ScoreBlock",
    "TrainConfig",
    "BPRMF",
    "HybridMF",
    "FactorModel",
    "ContentProfile",
    "EASE",
    "IALS",
    "ContentIALS",
    "EASEIALSBlend",
    "MostPop",
    "save_model",
    "load_model",
    "SavedModel",
]
