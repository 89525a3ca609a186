"""The engine calls behind the service: a batch of single-user queries scored in as few calls as possible.

Queries that share a snapshot, a temperature and the full catalogue go to the engine together: one
``ItemIndex.topk`` with the largest ``k`` of the group and a per-row exclusion list (the user's seen
items plus the request's ban list). Cutting a row's top-``k_max`` to its own ``k`` gives exactly its
top-``k`` (same order, same ties), and the normaliser does not depend on ``k``. A query restricted to a
subset of the catalogue (``allow`` / ``candidates``) is scored against just those rows, which gives the
same probabilities over the same eligible set. If an engine call refuses a group (e.g. a temperature so
small the scores would overflow), each query of the group is retried alone so only the offender fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..engine import topk
from .snapshot import ClientError, Snapshot

__all__ = ["Query", "Hit", "run_batch"]


@dataclass(eq=False)
class Query:
    """One user's scoring request against one snapshot (all ids already converted to catalogue rows).

    Attributes
    ----------
    snapshot : Snapshot
    vector : ndarray (D,) float32
        The user vector (or an item vector for ``/similar``).
    exclude : ndarray of int64
        Catalogue rows never listed and left out of the normaliser.
    subset : ndarray of int64 or None
        When given, the only eligible rows (before ``exclude``).
    k : int
    temperature : float
    cosine : bool
        Score against the unit-norm catalogue (``/similar`` with ``metric="cosine"``).
    """

    snapshot: Snapshot
    vector: np.ndarray
    exclude: np.ndarray
    subset: np.ndarray | None
    k: int
    temperature: float
    cosine: bool = False


@dataclass
class Hit:
    """A query's result: catalogue rows (padding dropped), raw scores, probabilities, log normaliser."""

    rows: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    log_normalizer: float


def _csr(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, dtype=np.int64)
    return indptr, indices


def _hits(result, ks, row_maps=None) -> list[Hit]:
    out = []
    for i, k in enumerate(ks):
        idx = result.indices[i, :k]
        listed = idx >= 0
        rows = idx[listed]
        if row_maps is not None:
            rows = row_maps[i][rows]
        out.append(
            Hit(rows, result.scores[i, :k][listed], result.probs[i, :k][listed], float(result.log_normalizer[i]))
        )
    return out


def _full_catalogue(group: list[Query]) -> list[Hit]:
    snap = group[0].snapshot
    index = snap.cosine_index() if group[0].cosine else snap.index
    users = np.stack([q.vector for q in group])
    k_max = max(q.k for q in group)
    result = index.topk(users, k_max, exclude=_csr([q.exclude for q in group]), temperature=group[0].temperature)
    return _hits(result, [q.k for q in group])


def _subset(query: Query) -> Hit:
    snap = query.snapshot
    rows = np.setdiff1d(query.subset, query.exclude, assume_unique=False)
    if rows.size == 0:
        return Hit(np.empty(0, np.int64), np.empty(0, np.float32), np.empty(0, np.float32), float("-inf"))
    items = snap.cosine_index().items if query.cosine else snap.items
    result = topk(query.vector[None, :], items[rows], min(query.k, rows.size), temperature=query.temperature)
    return _hits(result, [query.k], [rows])[0]


def _one(query: Query) -> Hit | Exception:
    try:
        return _subset(query) if query.subset is not None else _full_catalogue([query])[0]
    except ValueError as exc:
        # The only request-dependent engine refusal left after validation: scores / temperature overflow.
        return ClientError("temperature", f"the engine refused this request: {exc}")


def run_batch(queries: list[Query]) -> list[Hit | Exception]:
    """Score ``queries`` (in a worker thread); one result or exception per query, in order."""
    results: list[Hit | Exception | None] = [None] * len(queries)
    groups: dict[tuple, list[int]] = {}
    for i, q in enumerate(queries):
        if q.subset is not None:
            results[i] = _one(q)
        else:
            groups.setdefault((id(q.snapshot), q.temperature, q.cosine), []).append(i)
    for members in groups.values():
        group = [queries[i] for i in members]
        try:
            hits = _full_catalogue(group) if len(group) > 1 else [_one(group[0])]
        except ValueError:
            hits = [_one(q) for q in group]  # isolate the query the engine refused
        for i, hit in zip(members, hits):
            results[i] = hit
    return results  # type: ignore[return-value]
