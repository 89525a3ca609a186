"""Recommender models that hand user and item vectors to the engine.

- :class:`BPRMF` -- BPR matrix factorisation (torch, CPU or GPU).
- :class:`HybridMF` -- ID embeddings + a learned projection of each content modality (VBPR-style).
- :class:`ContentProfile` -- a user is the weighted mean of their items' content vectors.

All expose ``user_vectors()``, ``item_vectors()`` and ``blocks()`` (how a score splits into ID,
per-modality and bias parts); :func:`save_model` / :func:`load_model` round-trip them exactly.
"""

from .base import Recommender, ScoreBlock
from .config import TrainConfig
from .content import ContentProfile
from .factor import BPRMF, FactorModel, HybridMF
from .io import SavedModel, load_model, save_model

__all__ = ["Recommender", "ScoreBlock", "TrainConfig", "BPRMF", "HybridMF", "FactorModel", "ContentProfile",
           "save_model", "load_model", "SavedModel"]
