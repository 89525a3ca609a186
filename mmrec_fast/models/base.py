"""What every recommender model hands to the engine: user and item vectors whose dot product is the score.

A model's score decomposes into named column blocks (the ID part, one block per content modality, the
item bias), so ``score(u, i) = sum over blocks of users[u, block] . items[i, block]`` exactly; that
split is what recommendation explanations report.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

__all__ = ["ScoreBlock", "Recommender", "SizedRecommender", "registered_kinds", "model_class"]

# kind -> the Recommender subclass that declared it. Filled by Recommender.__init_subclass__ so that
# load_model can rebuild any registered kind from its saved state without a hand-kept table.
_KINDS: dict[str, type] = {}


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

    #: Short name used in tables, file names and saved metadata. A subclass that sets its own
    #: ``kind`` is registered under it (see :func:`registered_kinds`); two classes may not share one.
    kind: str = "recommender"

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Only classes that name their own kind register: a subclass inheriting its parent's kind
        # would otherwise steal the parent's entry (and load back as the wrong class).
        if "kind" not in cls.__dict__:
            return
        kind = cls.__dict__["kind"]
        if not isinstance(kind, str) or not kind:
            raise TypeError(f"{cls.__qualname__}.kind must be a non-empty string, got {kind!r}")
        previous = _KINDS.get(kind)
        # The same class defined again (a module reloaded, a notebook cell re-run) replaces its entry.
        if previous is not None and (previous.__module__, previous.__qualname__) != (cls.__module__, cls.__qualname__):
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}.kind: {kind!r} is already the kind of "
                f"{previous.__module__}.{previous.__qualname__}; choose another kind"
            )
        _KINDS[kind] = cls

    def state(self) -> tuple[dict[str, np.ndarray], dict]:
        """Everything needed to rebuild this model: named arrays (saved bit-exact) and JSON-able params.

        :func:`mmrec_fast.models.save_model` stores the arrays in ``weights.safetensors`` and the
        params in ``model.json``; :meth:`from_state` must rebuild a model whose vectors are
        bit-identical. Models with their own save code (``bpr``, ``hybrid``, ``content``) do not
        need it.

        Returns
        -------
        arrays : dict of str to ndarray
            Numeric arrays (any shape; bool, integer or floating dtypes).
        params : dict
            Plain-JSON values (str, int, float, bool, None, lists and dicts of them).

        Raises
        ------
        NotImplementedError
            The class does not support saving through the generic protocol.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement state(); it cannot be saved")

    @classmethod
    def from_state(cls, arrays: dict[str, np.ndarray], params: dict) -> Recommender:
        """Inverse of :meth:`state`: rebuild the model from its saved arrays and params.

        Parameters
        ----------
        arrays : dict of str to ndarray
            The arrays :meth:`state` returned (same names, dtypes and shapes).
        params : dict
            The params :meth:`state` returned, after a JSON round trip.

        Raises
        ------
        NotImplementedError
            The class does not support loading through the generic protocol.
        """
        raise NotImplementedError(f"{cls.__name__} does not implement from_state(); it cannot be loaded")

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


def registered_kinds() -> dict[str, type]:
    """Every registered model kind and its class (a copy; import a model's module to register it).

    Returns
    -------
    dict of str to type
        ``kind -> Recommender subclass``, including the built-in ``"bpr"``, ``"hybrid"`` and ``"content"``.
    """
    return dict(_KINDS)


def model_class(kind: str) -> type:
    """The :class:`Recommender` subclass registered under ``kind``.

    Raises
    ------
    ValueError
        No class declares ``kind`` (the message lists the known kinds).
    """
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"kind: unknown model kind {kind!r}; known: {sorted(_KINDS)}") from None


def positive_int(value, name: str) -> int:
    """``value`` as an int >= 1 (bools refused); ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


class SizedRecommender(Recommender):
    """A recommender over fixed id spaces: ``n_users`` users and ``n_items`` items (checked, >= 1)."""

    def __init__(self, n_users: int, n_items: int):
        self._n_users = positive_int(n_users, "n_users")
        self._n_items = positive_int(n_items, "n_items")

    @property
    def n_users(self) -> int:
        return self._n_users

    @property
    def n_items(self) -> int:
        return self._n_items
