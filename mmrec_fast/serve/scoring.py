"""The engine calls behind the service: a batch of single-user queries scored in as few calls as possible.

Queries that share a snapshot, a temperature and a metric go to the engine together: one query of the
snapshot's pinned live-index state (:func:`mmrec_fast.index_query.query`, item keys in and out) with
the largest ``k`` of the group, a per-row exclusion list (the user's seen items plus the request's ban
list) and, for queries restricted to a subset (``allow`` / ``candidates``), the engine's per-user
``candidates``; queries with and without a subset form separate groups. Cutting a row's top-``k_max``
to its own ``k`` gives exactly its top-``k`` (same order, same ties), and the normaliser
does not depend on ``k``. If an engine call refuses a group (e.g. a temperature so small the scores would
overflow), each query of the group is retried alone so only the offender fails.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import validation
from ..index_query import query
from .snapshot import ClientError, Snapshot

__all__ = ["Query", "Hit", "run_batch"]


@dataclass(eq=False)
class Query:
    """One user's scoring request against one snapshot (all ids already converted to item keys).

    Attributes
    ----------
    snapshot : Snapshot
    vector : ndarray (D,) float32
        The user vector (or an item vector for ``/similar``).
    exclude : ndarray of int64
        Item keys never listed and left out of the normaliser.
    subset : ndarray of int64 or None
        When given, the only eligible keys (before ``exclude``).
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
    """A query's result: item keys (padding dropped), raw scores, probabilities, log normaliser."""

    rows: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    log_normalizer: float


def _csr(rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.empty(0, dtype=np.int64)
    return indptr, indices


def _hits(result, ks) -> list[Hit]:
    out = []
    for i, k in enumerate(ks):
        idx = result.indices[i, :k]
        listed = idx >= 0
        rows = idx[listed]
        out.append(
            Hit(rows, result.scores[i, :k][listed], result.probs[i, :k][listed], float(result.log_normalizer[i]))
        )
    return out


def _engine_call(group: list[Query]) -> list[Hit]:
    """One engine call for queries sharing snapshot, temperature and metric (subset queries: ``candidates``)."""
    state = group[0].snapshot.query_state(group[0].cosine)  # pinned: later item updates do not touch it
    users = np.stack([q.vector for q in group])
    k_max = validation.check_k(max(q.k for q in group))
    temperature = validation.check_temperature(group[0].temperature)
    options = {}
    if group[0].subset is not None:
        options["candidates"] = _csr([q.subset for q in group])
    result = query(state, users, k_max, exclude=_csr([q.exclude for q in group]), temperature=temperature, **options)
    return _hits(result, [q.k for q in group])


def _one(query: Query) -> Hit | Exception:
    try:
        return _engine_call([query])[0]
    except ValueError as exc:
        # The only request-dependent engine refusal left after validation: scores / temperature overflow.
        return ClientError("temperature", f"the engine refused this request: {exc}")


def run_batch(queries: list[Query]) -> list[Hit | Exception]:
    """Score ``queries`` (in a worker thread); one result or exception per query, in order."""
    results: list[Hit | Exception | None] = [None] * len(queries)
    groups: dict[tuple, list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault((id(q.snapshot), q.temperature, q.cosine, q.subset is None), []).append(i)
    for members in groups.values():
        group = [queries[i] for i in members]
        try:
            hits = _engine_call(group) if len(group) > 1 else [_one(group[0])]
        except ValueError:
            hits = [_one(q) for q in group]  # isolate the query the engine refused
        for i, hit in zip(members, hits):
            results[i] = hit
    return results  # type: ignore[return-value]
