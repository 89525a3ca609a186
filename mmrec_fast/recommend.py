"""Recommendation lists: the engine's top-k with catalogue-softmax probabilities and explanations.

Each recommended item comes with

- its **probability** under the softmax over the user's whole eligible catalogue (the engine's
  normaliser, not a renormalisation over the k listed items);
- the **contribution of each score block** (ID part, each content modality, item bias): the model's
  vectors are concatenations of blocks, so ``score = sum of contributions`` exactly; ``share_<block>``
  is ``contribution / sum of |contributions|`` (signed, absolute shares sum to 1);
- the user's **past items most similar** to it (cosine in the model's item representation: content
  vectors for content-aware models, ID vectors for BPR-MF).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .engine import topk
from .models.base import Recommender

__all__ = ["Recommendations", "recommend"]


@dataclass
class Recommendations:
    """Top-k lists of a set of users, with probabilities and explanations (all arrays in item codes).

    Attributes
    ----------
    users : ndarray of int64, shape (n,)
        User codes, one row each.
    items, scores, probs : ndarray, shape (n, k)
        Item codes (-1 padding), raw scores (-inf padding) and catalogue-softmax probabilities.
    contributions : dict of str -> ndarray (n, k)
        Per score block, its exact part of each score (0 in padding slots).
    similar : ndarray of int64, shape (n, k, m)
        Per recommended item, the user's ``m`` most similar past items (-1 where fewer exist).
    similarity : ndarray of float32, shape (n, k, m)
        Their cosine similarities (NaN where ``similar`` is -1).
    """

    users: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    probs: np.ndarray
    contributions: dict
    similar: np.ndarray
    similarity: np.ndarray

    def to_records(self, *, user_map=None, item_map=None, item_labels=None) -> list[dict]:
        """One dict per (user, rank): raw ids when maps are given, labels (e.g. titles) when given."""

        def plain(value):  # numpy scalars -> Python values, so every writer can serialise them
            return value.item() if isinstance(value, np.generic) else value

        def item_id(code):
            return plain(item_map.decode(np.asarray([code]))[0]) if item_map is not None else int(code)

        def label(code):
            return None if item_labels is None else str(item_labels[code])

        records = []
        for row, user in enumerate(self.users):
            uid = plain(user_map.decode(np.asarray([user]))[0]) if user_map is not None else int(user)
            for rank in range(self.items.shape[1]):
                code = int(self.items[row, rank])
                if code < 0:
                    continue
                contrib = {name: float(c[row, rank]) for name, c in self.contributions.items()}
                total = sum(abs(v) for v in contrib.values()) or 1.0
                because = [int(s) for s in self.similar[row, rank] if s >= 0]
                rec = {
                    "user": uid,
                    "rank": rank + 1,
                    "item": item_id(code),
                    "score": float(self.scores[row, rank]),
                    "probability": float(self.probs[row, rank]),
                }
                if item_labels is not None:
                    rec["title"] = label(code)
                rec.update({f"contrib_{n}": v for n, v in contrib.items()})
                rec.update({f"share_{n}": v / total for n, v in contrib.items()})
                rec["because_you_liked"] = [label(s) if item_labels is not None else item_id(s) for s in because]
                records.append(rec)
        return records

    def write(self, path, **record_options) -> Path:
        """Write :meth:`to_records` as ``.csv``, ``.parquet`` or ``.jsonl`` (chosen by the extension)."""
        import pandas as pd

        path = Path(path)
        records = self.to_records(**record_options)
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            with open(path, "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return path
        frame = pd.DataFrame.from_records(records)
        if suffix == ".csv":
            if "because_you_liked" in frame:
                frame["because_you_liked"] = frame["because_you_liked"].map(lambda xs: " | ".join(map(str, xs)))
            frame.to_csv(path, index=False)
        elif suffix == ".parquet":
            frame.to_parquet(path, index=False)
        else:
            raise ValueError(f"path: unsupported extension {suffix!r} (use .csv, .parquet or .jsonl)")
        return path


def _as_user_codes(users, n_users: int) -> np.ndarray:
    if users is None:
        return np.arange(n_users, dtype=np.int64)
    arr = np.asarray(users)
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise ValueError(f"users must be a 1-D array of integer user codes, got shape {arr.shape} dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    bad = (arr < 0) | (arr >= n_users)
    if bad.any():
        raise ValueError(f"users: codes out of range 0..{n_users - 1}: {np.unique(arr[bad])[:5].tolist()}")
    return arr


def _similar_past_items(
    rep: np.ndarray, items: np.ndarray, history: sp.csr_matrix, users: np.ndarray, m: int
) -> tuple[np.ndarray, np.ndarray]:
    n, k = items.shape
    similar = np.full((n, k, m), -1, dtype=np.int64)
    similarity = np.full((n, k, m), np.nan, dtype=np.float32)
    if m == 0:
        return similar, similarity
    norms = np.linalg.norm(rep, axis=1, keepdims=True)
    unit = np.divide(rep, norms, out=np.zeros_like(rep), where=norms > 0)
    for row, user in enumerate(users):
        past = history.indices[history.indptr[user] : history.indptr[user + 1]]
        listed = items[row] >= 0
        if past.size == 0 or not listed.any():
            continue
        sims = unit[items[row, listed]] @ unit[past].T  # (k', |past|): one user's lists are small
        take = min(m, past.size)
        # Stable sort on -sim keeps the lower item code first among equal similarities.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :take]
        similar[row, listed, :take] = past[order]
        similarity[row, listed, :take] = np.take_along_axis(sims, order, axis=1)
    return similar, similarity


def recommend(
    model: Recommender,
    users=None,
    k: int = 10,
    *,
    exclude: sp.spmatrix | None = None,
    history: sp.spmatrix | None = None,
    temperature: float = 1.0,
    n_similar: int = 3,
    backend: str = "auto",
) -> Recommendations:
    """Top-``k`` lists for ``users`` with probabilities and per-item explanations.

    Parameters
    ----------
    model : Recommender
        A fitted model (its vectors are scored by the engine).
    users : array of int, optional
        User codes to serve (default: every user).
    k : int
        List length.
    exclude : scipy sparse (n_users, n_items), optional
        Items never to recommend to each user (typically their training items); they are also left
        out of the softmax normaliser.
    history : scipy sparse (n_users, n_items), optional
        Past items used for "because you liked" (default: ``exclude``).
    temperature : float
        Softmax temperature of the probabilities.
    n_similar : int
        Past items listed per recommendation (0 to skip).
    backend : str
        Engine backend (see :func:`mmrec_fast.available_backends`).

    Returns
    -------
    Recommendations
    """
    codes = _as_user_codes(users, model.n_users)
    if not isinstance(n_similar, (int, np.integer)) or n_similar < 0:
        raise ValueError(f"n_similar must be an integer >= 0, got {n_similar!r}")
    user_vec = model.user_vectors()[codes]
    item_vec = model.item_vectors()
    sub_exclude = None
    if exclude is not None:
        if not sp.issparse(exclude) or exclude.shape != (model.n_users, model.n_items):
            raise ValueError(f"exclude must be a sparse ({model.n_users}, {model.n_items}) matrix")
        sub_exclude = sp.csr_matrix(exclude)[codes]
    top = topk(user_vec, item_vec, k, exclude=sub_exclude, temperature=temperature, backend=backend)
    listed = top.indices >= 0
    safe = np.where(listed, top.indices, 0)
    contributions = {}
    for block in model.blocks():
        part = np.einsum(
            "nd,nkd->nk",
            user_vec[:, block.columns].astype(np.float64),
            item_vec[safe][:, :, block.columns].astype(np.float64),
        )
        contributions[block.name] = np.where(listed, part, 0.0).astype(np.float32)
    if history is None:
        history = exclude
    if history is None:
        history = sp.csr_matrix((model.n_users, model.n_items))
    elif not sp.issparse(history) or history.shape != (model.n_users, model.n_items):
        raise ValueError(f"history must be a sparse ({model.n_users}, {model.n_items}) matrix")
    similar, similarity = _similar_past_items(
        model.representation(), top.indices, sp.csr_matrix(history), codes, int(n_similar)
    )
    return Recommendations(codes, top.indices, top.scores, top.probs, contributions, similar, similarity)
