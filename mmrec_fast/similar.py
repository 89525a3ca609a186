""" "More like this": the items most similar to given items, through the engine (dot product or cosine).

Cosine similarity runs the same engine on unit-normalised copies of the rows; those copies are built
once per index segment and cached on it (a write re-normalises only the rows it adds).
"""

from __future__ import annotations

import numpy as np

from . import index_state as state
from . import validation
from ._index_cache import cached_index
from .index_query import per_user_ids, query
from .result import TopK

__all__ = ["similar_items"]

_METRICS = ("dot", "cosine")


def similar_items(
    items,
    item_ids,
    k: int,
    *,
    metric: str = "dot",
    exclude_self: bool = True,
    exclude=None,
    allow=None,
    ban=None,
    candidates=None,
    temperature: float = 1.0,
    normalizer: bool = True,
    backend: str = "auto",
    num_threads=None,
) -> TopK:
    """For each query item, the ``k`` most similar items of the catalogue, with softmax probabilities.

    Parameters
    ----------
    items : ItemIndex or array-like (I, d)
        The catalogue. A raw array is packed once and cached by its identity (ids are its rows).
    item_ids : array-like of int, shape (n,)
        The query items (external ids of the index; ``ValueError`` naming ``item_ids`` if one is absent).
    k : int
        List length.
    metric : {"dot", "cosine"}
        Similarity: the raw dot product, or the cosine (dot product of unit-normalised rows; a zero
        row has similarity 0 to everything).
    exclude_self : bool
        Leave each query item out of its own list (and out of its normaliser).
    exclude, allow, ban, candidates
        Filters as in :meth:`ItemIndex.topk`: ``exclude`` / ``candidates`` hold one id list per query item.
    temperature, normalizer, backend, num_threads
        As in :func:`mmrec_fast.topk`.

    Returns
    -------
    TopK
        One row per query item: ``indices`` (external ids, -1 padding), ``scores`` (dot products or
        cosines), ``log_normalizer`` and ``probs`` over each row's eligible items.

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    >>> mf.similar_items(items, [0], k=2, metric="cosine").indices.tolist()
    [[1, 2]]
    """
    from .index import ItemIndex

    index = items if isinstance(items, ItemIndex) else cached_index(items, backend=backend)
    return similar_in_index(
        index,
        item_ids,
        k,
        metric=metric,
        exclude_self=exclude_self,
        exclude=exclude,
        allow=allow,
        ban=ban,
        candidates=candidates,
        temperature=temperature,
        normalizer=normalizer,
        backend=backend,
        num_threads=num_threads,
    )


def similar_in_index(
    index,
    item_ids,
    k: int,
    *,
    metric: str = "dot",
    exclude_self: bool = True,
    exclude=None,
    allow=None,
    ban=None,
    candidates=None,
    temperature: float = 1.0,
    normalizer: bool = True,
    backend: str = "auto",
    num_threads=None,
) -> TopK:
    """:func:`similar_items` on an :class:`~mmrec_fast.ItemIndex` (its ``similar_items`` method)."""
    k = validation.check_k(k)
    temperature = validation.check_temperature(temperature)
    if metric not in _METRICS:
        raise ValueError(f"metric: expected one of {_METRICS}, got {metric!r}")
    if not isinstance(exclude_self, (bool, np.bool_)):
        raise TypeError(f"exclude_self: expected a bool, got {type(exclude_self).__name__}")
    index.check_compatible(backend, None)
    snap = index.snapshot()  # one state for the lookup and the search
    ids = state.as_external_ids(item_ids, "item_ids")
    if metric == "cosine":
        snap = _cosine_snapshot(snap, index._segment)
    queries = snap.vectors(ids, "item_ids")
    if exclude_self:
        exclude = _with_self(per_user_ids(exclude, ids.shape[0], "exclude"), ids)
    return query(
        snap,
        queries,
        k,
        exclude=exclude,
        allow=allow,
        ban=ban,
        candidates=candidates,
        temperature=temperature,
        normalizer=normalizer,
        num_threads=num_threads,
    )


def _with_self(lists, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-query exclusion lists with each query's own id appended."""
    n = ids.shape[0]
    if lists is None:
        return np.arange(n + 1, dtype=np.int64), ids
    indptr, excl = lists
    return indptr + np.arange(n + 1, dtype=np.int64), np.insert(excl, indptr[1:], ids)


def unit_rows(items: np.ndarray) -> np.ndarray:
    """Rows scaled to unit Euclidean norm (norms in float64; zero rows stay zero), float32."""
    rows = np.asarray(items, dtype=np.float64)
    norms = np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0).astype(np.float32)


def _cosine_segment(seg: state.Segment, make) -> state.Segment:
    with seg.lock:  # concurrent first cosine queries build the copy once
        unit = seg.cache.get("cosine")
        if unit is None:
            unit = make(unit_rows(seg.host_items()), seg.ids)
            seg.cache["cosine"] = unit
    return unit


def _cosine_snapshot(snap: state.Snapshot, make) -> state.Snapshot:
    """The snapshot with unit rows: same ids, tombstones and version; segments' copies shared across writes."""
    unit = snap.cache.get("cosine")
    if unit is None:
        delta = None if snap.delta is None else _cosine_segment(snap.delta, make)
        unit = state.Snapshot(_cosine_segment(snap.main, make), snap.dead, delta, snap.version)
        snap.cache["cosine"] = unit
    return unit
