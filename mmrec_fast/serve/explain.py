"""Response items: external ids, labels, and (on request) exact per-block contributions and "because you liked".

The same explanations as :mod:`mmrec_fast.recommend`, for one user: each score block's part of the dot
product (they sum to the score), and the user's past items most similar to each recommendation (cosine
in the model's item representation; ties to the lower item code). Items added after training have no
representation, so they get no "because you liked".
"""

from __future__ import annotations

import numpy as np

from .scoring import Hit
from .snapshot import Snapshot

__all__ = ["explain_hits"]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else value


def _unit(rows: np.ndarray) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _because(snap: Snapshot, codes: np.ndarray, past: np.ndarray, m: int) -> list[list[dict]]:
    out: list[list[dict]] = [[] for _ in codes]
    known = codes >= 0
    if m == 0 or past.size == 0 or not known.any() or snap.representation is None:
        return out
    rep = snap.representation
    sims = _unit(rep[codes[known]]) @ _unit(rep[past]).T
    take = min(m, past.size)
    order = np.argsort(-sims, axis=1, kind="stable")[:, :take]  # past is sorted: ties -> lower code
    past_ids = snap.model_items.ids[past]
    past_keys = snap.code_to_key[past]
    for slot, row in enumerate(np.flatnonzero(known)):
        entries = []
        for j in order[slot]:
            label = None
            if snap.labels is not None and past_keys[j] >= 0:
                label = snap.labels[past_keys[j]]
            entries.append({"item": _plain(past_ids[j]), "label": label, "similarity": float(sims[slot, j])})
        out[row] = entries
    return out


def explain_hits(snap: Snapshot, hit: Hit, user_vector: np.ndarray | None, past: np.ndarray, m: int) -> list[dict]:
    """JSON-ready items of ``hit``; with ``user_vector``, contributions and ``m`` "because you liked" each.

    Parameters
    ----------
    snap : Snapshot
        The snapshot that scored the hit.
    hit : Hit
        Rows, scores and probabilities.
    user_vector : ndarray (D,) or None
        The query's user vector (None: no explanations).
    past : ndarray of int64
        The user's past items as sorted model item codes.
    m : int
        Past items per recommendation.

    Returns
    -------
    list of dict
    """
    ids = snap.catalogue.ids[hit.rows].tolist()
    labels = [None] * len(ids) if snap.labels is None else snap.labels[hit.rows].tolist()
    items = [
        {"item": item, "label": label, "score": float(score), "probability": float(prob)}
        for item, label, score, prob in zip(ids, labels, hit.scores.tolist(), hit.probs.tolist())
    ]
    if user_vector is None or not items:
        return items
    vectors = snap.vectors(hit.rows).astype(np.float64)  # hit keys are live in the snapshot's pinned state
    user = user_vector.astype(np.float64)
    parts = {b.name: vectors[:, b.columns] @ user[b.columns] for b in snap.blocks}
    because = _because(snap, snap.key_to_code[hit.rows], past, m)
    for i, item in enumerate(items):
        item["contributions"] = {name: float(part[i]) for name, part in parts.items()}
        item["because_you_liked"] = because[i]
    return items
