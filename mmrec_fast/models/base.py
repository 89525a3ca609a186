"""What every recommender model hands to the engine: user and item vectors whose dot product is the score.

A model's score decomposes into named column blocks (the ID part, one block per content modality, the
item bias), so ``score(u, i) = sum over blocks of users[u, block] . items[i, block]`` exactly; that
split is what recommendation explanations report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

__all__ = ["ScoreBlock", "Recommender"]


@dataclass(frozen=True)
class ScoreBlock:
    """A named, contiguous range of columns of the user and item vectors.

    Attributes
    ----------
    name : str
        What the block stands for (``"id"``, ``"bias"``, or a content modality such as ``"text"``).
    start, stop : int
        Column range ``[start, stop)``.
    """

    name: str
    start: int
    stop: int

    @property
    def columns(self) -> slice:
        """The block's columns as a slice."""
        return slice(self.start, self.stop)


class Recommender(ABC):
    """A trained (or closed-form) model the engine can rank with.

    Subclasses expose float32 ``user_vectors()`` (U x D) and ``item_vectors()`` (I x D); the engine's
    ``topk(user_vectors, item_vectors, k, exclude=...)`` then ranks the full catalogue without a dense
    U x I matrix, and ``blocks()`` says how a score splits into parts.
    """

    #: Short name used in tables, file names and saved metadata.
    kind: str = "recommender"

    @property
    @abstractmethod
    def n_users(self) -> int:
        """Number of users the model knows."""

    @property
    @abstractmethod
    def n_items(self) -> int:
        """Number of items the model knows."""

    @abstractmethod
    def user_vectors(self) -> np.ndarray:
        """Float32 array (n_users, D): the user side of the score."""

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """Float32 array (n_items, D): the item side of the score."""

    @abstractmethod
    def blocks(self) -> list[ScoreBlock]:
        """The named column blocks that partition the D columns of both vector sets."""

    def representation(self) -> np.ndarray:
        """Item vectors used to find a user's past items similar to a recommended one.

        Defaults to the item vectors without the bias column(s); content-aware models override it
        with their content block so that "similar" means similar content.
        """
        items = self.item_vectors()
        keep = [b.columns for b in self.blocks() if b.name != "bias"]
        return np.concatenate([items[:, c] for c in keep], axis=1) if keep else items
