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

from . import validation
from ._index_cache import cached_index
from ._optional import require
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
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".jsonl", ".csv", ".parquet"):
            raise ValueError(f"path: unsupported extension {suffix!r} (use .csv, .parquet or .jsonl)")
        records = self.to_records(**record_options)
        if suffix == ".jsonl":
            with open(path, "w", encoding="utf-8") as fh:
                for rec in records:
                    fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            return path
        pd = require("pandas", extra="data", feature=f"writing {suffix} recommendation lists")
        frame = pd.DataFrame.from_records(records)
        if suffix == ".csv":
            if "because_you_liked" in frame:
                frame["because_you_liked"] = frame["because_you_liked"].map(lambda xs: " | ".join(map(str, xs)))
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
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


def _representation_rows(model: Recommender):
    """A function rows -> the model's similarity representation of those items, without a full copy.

    The base class builds its representation by concatenating column blocks of the whole item matrix
    (an I x d copy per call); for it, only the rows asked for are gathered.
    """
    if type(model).representation is Recommender.representation:
        items = model.item_vectors()
        keep = [b.columns for b in model.blocks() if b.name != "bias"]
        if not keep:
            return lambda rows: items[rows]
        return lambda rows: np.concatenate([items[rows][:, c] for c in keep], axis=1)
    rep = model.representation()
    return lambda rows: rep[rows]


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)


def _similar_past_items(
    rep_rows, items: np.ndarray, history: tuple[np.ndarray, np.ndarray], m: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per recommended item, the user's ``m`` most similar past items (cosine in the representation).

    ``history`` is the CSR (indptr, indices) of the served users' past items, one row per served user.
    Only the rows involved are normalised: one user's lists are small beside the catalogue.
    """
    n, k = items.shape
    similar = np.full((n, k, m), -1, dtype=np.int64)
    similarity = np.full((n, k, m), np.nan, dtype=np.float32)
    if m == 0:
        return similar, similarity
    indptr, indices = history
    for row in range(n):
        past = indices[indptr[row] : indptr[row + 1]]
        listed = items[row] >= 0
        if past.size == 0 or not listed.any():
            continue
        sims = _unit(rep_rows(items[row, listed])) @ _unit(rep_rows(past)).T  # (k', |past|)
        take = min(m, past.size)
        # Stable sort on -sim keeps the lower item code first among equal similarities.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :take]
        similar[row, listed, :take] = past[order]
        similarity[row, listed, :take] = np.take_along_axis(sims, order, axis=1)
    return similar, similarity


def _user_rows(matrix, name: str, n_users: int, n_items: int, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CSR (indptr, sorted unique indices) of the requested users' rows only (never the whole matrix)."""
    if not sp.issparse(matrix) or matrix.shape != (n_users, n_items):
        raise ValueError(f"{name} must be a sparse ({n_users}, {n_items}) matrix")
    if matrix.format != "csr":
        matrix = matrix.tocsr()  # other layouts cannot be row-sliced without a conversion
    # Slice first, convert after: the whole matrix's int32 arrays are never copied (one user is ~20 ids).
    indptr, indices = validation.exclusion_rows(matrix.indptr, matrix.indices, codes)
    indices = indices.astype(np.int64, copy=False)
    # Explicitly stored entries count whatever their value; sorted, duplicate-free rows for the engine.
    return validation.as_exclusion((indptr, indices), codes.shape[0], n_items)


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
        sub_exclude = _user_rows(exclude, "exclude", model.n_users, model.n_items, codes)
    # Packed once per item matrix (identity-keyed cache): a single-user call pays the query, not the packing.
    index = cached_index(item_vec, backend=backend)
    top = index.topk(user_vec, k, exclude=sub_exclude, temperature=temperature)
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
        past = (
            sub_exclude if sub_exclude is not None else (np.zeros(codes.shape[0] + 1, np.int64), np.zeros(0, np.int64))
        )
    else:
        past = _user_rows(history, "history", model.n_users, model.n_items, codes)
    similar, similarity = _similar_past_items(_representation_rows(model), top.indices, past, int(n_similar))
    return Recommendations(codes, top.indices, top.scores, top.probs, contributions, similar, similarity)
