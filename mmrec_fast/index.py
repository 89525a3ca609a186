"""A prepared item index: items validated, converted and packed once for repeated queries."""

from __future__ import annotations

import numpy as np

from . import validation
from ._search import search
from .backends import BlockConfig, get_backend

__all__ = ["ItemIndex"]


class ItemIndex:
    """Item embeddings kept ready (validated, float32, packed for the chosen backend).

    Building the index costs one pass over the items; every :meth:`topk` on it then skips conversion,
    the finiteness check and packing.

    Parameters
    ----------
    items : array-like, shape (I, d)
        Item embeddings (NumPy, torch or CuPy; float16/32/64 or integer).
    backend : str
        "auto", "native", "numba", "numpy", "cuda", "cupy" or "torch" (see
        :func:`mmrec_fast.available_backends`). With "cuda", "cupy" or "torch", torch tensors and CuPy
        arrays stay on their device and host items are uploaded once.
    item_block : int, optional
        Items per block of the tiled kernel (``None``: the backend's cache-sized default).

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> rng = np.random.default_rng(0)
    >>> index = mf.ItemIndex(rng.normal(size=(1000, 16)))
    >>> result = index.topk(rng.normal(size=(3, 16)), k=5)
    >>> result.indices.shape
    (3, 5)
    """

    def __init__(
        self, items, *, backend: str = "auto", item_block: int | None = None, _persistent: bool = True, _users=None
    ):
        self.backend = get_backend(
            backend, arrays=(items,) if _users is None else (_users, items), macs=_macs(_users, items)
        )
        if getattr(self.backend, "array_api", False):
            # GPU-capable backends keep torch / CuPy items where they are (validated in place).
            self.items = validation.as_float_matrix_any(
                items, "items", keep_half=getattr(self.backend, "half_inputs", False)
            )
        else:
            self.items = validation.as_float_matrix(items, "items")
        if _persistent:
            # The index owns what it validated: a caller mutating their array later must not bypass
            # the finiteness check (a NaN ranked first) or desynchronise packed and raw items.
            self.items = _owned_copy(self.items, items)
        self.item_block = item_block
        self._config = BlockConfig(item_block=item_block)
        # A temporary index (one topk call on a raw array) lets the backend skip a full packed copy.
        self.prepared = self.backend.prepare_items(self.items, self._config, persistent=_persistent)
        # The overflow guard needs max |v|; computing it once here keeps repeated queries cheap.
        self.max_abs = validation.max_abs(self.items)

    @property
    def n_items(self) -> int:
        """Number of items I."""
        return self.items.shape[0]

    @property
    def dim(self) -> int:
        """Embedding dimension d."""
        return self.items.shape[1]

    @property
    def backend_name(self) -> str:
        """Name of the backend the items are packed for."""
        return self.backend.name

    def topk(
        self,
        users,
        k: int,
        *,
        exclude=None,
        temperature=1.0,
        backend: str = "auto",
        user_block=None,
        item_block=None,
        num_threads=None,
        progress=False,
    ):
        """Top-k against this index; same arguments and result as :func:`mmrec_fast.topk`."""
        k = validation.check_k(k)
        temperature = validation.check_temperature(temperature)
        self.check_compatible(backend, item_block)
        return search(self, users, k, exclude, temperature, user_block, num_threads, progress)

    def check_compatible(self, backend: str, item_block) -> None:
        """A query may name this index's backend (or "auto") and item block (or None), nothing else."""
        if backend not in ("auto", self.backend_name):
            raise ValueError(
                f"backend: {backend!r} requested, but items is an ItemIndex prepared for {self.backend_name!r}"
            )
        if item_block is not None and item_block != self.item_block:
            raise ValueError(
                "item_block: an ItemIndex is packed with its own item_block; set it when building the index"
            )

    def __repr__(self) -> str:
        return f"ItemIndex(n_items={self.n_items}, dim={self.dim}, backend={self.backend_name!r})"


def _owned_copy(validated, original):
    """``validated`` itself if it is already a private copy of ``original``, else a read-only copy."""
    from . import _arrays

    fam = _arrays.family(validated)
    if fam == "torch":
        shared = _arrays.family(original) == "torch" and validated.data_ptr() == original.data_ptr()
        return validated.clone() if shared else validated
    if fam == "cupy":
        import cupy

        return validated.copy() if cupy.shares_memory(validated, original) else validated
    try:
        shared = np.shares_memory(validated, validation.to_numpy(original, "items"))
    except Exception:  # an exotic container: copy to be safe
        shared = True
    out = validated.copy() if shared else validated
    out.flags.writeable = False
    return out


def _macs(users, items) -> int | None:
    """U x I x d of a call, from shapes alone (``None`` when they are not known or not matrices yet)."""
    try:
        return int(users.shape[0]) * int(items.shape[0]) * int(items.shape[1])
    except (AttributeError, IndexError, TypeError):
        return None
