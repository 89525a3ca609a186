"""Cold-start protocols: new items (content only) and new users (folded in), with their splits and scores.

Two seeded splits of one interaction matrix (values = ratings, or ones for implicit data):

- :func:`cold_item_split` holds out a share of the *items* with every one of their interactions. A
  model trains on the rest and must score the held-out items from their content alone
  (``model.item_vectors_from(features)``); the users who interacted with them are evaluated twice:
  ranking only the held-out items (the usual cold-start protocol) and ranking the whole catalogue
  minus their own training items (the realistic one, where cold items compete with warm ones).
- :func:`cold_user_split` holds out a share of the *users*. A model trains on the others; each
  held-out user's interactions are split into a history (folded in without retraining,
  ``model.fold_in(history)``) and targets. The same users are scored by a model retrained with their
  histories, which is what fold-in should come close to.

:class:`VectorOverride` puts the cold rows into a model's vectors so the one evaluator
(:func:`mmrec_fast.evaluation.evaluate_model`) scores every protocol; :func:`random_ndcg` is the exact
expectation of NDCG@k under a uniformly random ranking (the floor every cold-item model must clear).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..engine import topk
from ..models.base import Recommender, ScoreBlock
from .protocol import own_and_unseen, pairs_block

__all__ = [
    "ColdItemSplit",
    "ColdUserSplit",
    "cold_item_split",
    "cold_user_split",
    "VectorOverride",
    "cold_item_vectors",
    "fold_in_users",
    "random_ndcg",
    "cold_item_landing",
]


def _check_matrix(matrix, name: str = "interactions") -> sp.csr_matrix:
    if not sp.issparse(matrix):
        raise TypeError(f"{name} must be a scipy sparse users x items matrix, got {type(matrix).__name__}")
    out = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    out.sum_duplicates()
    out.eliminate_zeros()
    if out.nnz == 0:
        raise ValueError(f"{name} has no stored interaction")
    if not np.isfinite(out.data).all():
        raise ValueError(f"{name} holds NaN or infinite values")
    out.sort_indices()
    return out


def _check_fraction(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def _ones(matrix: sp.csr_matrix) -> sp.csr_matrix:
    out = matrix.copy()
    out.data[:] = 1.0
    return out.astype(np.float32)


def _relevant(matrix: sp.csr_matrix, relevance) -> sp.csr_matrix:
    """Entries rated at least ``relevance`` (every entry when ``relevance`` is None), as ones."""
    out = matrix.copy()
    if relevance is not None:
        out.data = np.where(out.data >= float(relevance), 1.0, 0.0)
        out.eliminate_zeros()
    return _ones(out)


@dataclass
class ColdItemSplit:
    """New-item protocol: some items are unseen in training and must be scored from content.

    Attributes
    ----------
    train : csr (n_users, n_items), float32 ones
        Every interaction with a warm item; the cold items' columns are empty.
    cold_items : ndarray of int64
        The held-out items (sorted).
    positives : csr (n_users, n_items), float32 ones
        Relevant interactions with cold items (rated >= ``relevance``): the targets.
    exclude_among_cold : csr
        For ranking among cold items only: every warm item, for every evaluated user.
    exclude_catalogue : csr
        For ranking the whole catalogue: each user's own training items.
    """

    train: sp.csr_matrix
    cold_items: np.ndarray
    positives: sp.csr_matrix
    exclude_among_cold: sp.csr_matrix
    exclude_catalogue: sp.csr_matrix


def cold_item_split(
    interactions: sp.spmatrix, *, fraction: float = 0.2, seed: int = 0, relevance: float | None = None
) -> ColdItemSplit:
    """Hold out ``fraction`` of the items with all their interactions (seeded).

    Parameters
    ----------
    interactions : scipy sparse (n_users, n_items)
        The whole log; values are ratings when ``relevance`` is given (else any non-zero is an
        interaction).
    fraction : float
        Share of the items that interacted at least once to hold out (rounded, at least one, and at
        least one warm item kept).
    seed : int
        Seeds the choice of items.
    relevance : float, optional
        Cold-item interactions rated at least this are targets; None makes every one a target.

    Returns
    -------
    ColdItemSplit
    """
    matrix = _check_matrix(interactions)
    fraction = _check_fraction(fraction, "fraction")
    n_users, n_items = matrix.shape
    active = np.flatnonzero(np.diff(matrix.tocsc().indptr) > 0)
    n_cold = int(round(fraction * len(active)))
    if len(active) < 2:
        raise ValueError("interactions: need at least two items with interactions to hold some out")
    n_cold = min(max(n_cold, 1), len(active) - 1)
    cold = np.sort(np.random.default_rng(seed).choice(active, size=n_cold, replace=False)).astype(np.int64)
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold] = True
    coo = matrix.tocoo()
    take = is_cold[coo.col]
    warm = sp.csr_matrix((coo.data[~take], (coo.row[~take], coo.col[~take])), shape=matrix.shape)
    held = sp.csr_matrix((coo.data[take], (coo.row[take], coo.col[take])), shape=matrix.shape)
    positives = _relevant(held, relevance)
    users = np.flatnonzero(np.diff(positives.indptr) > 0)
    among_cold = pairs_block(users, np.flatnonzero(~is_cold), matrix.shape)
    train = _ones(warm)
    train.sort_indices()
    return ColdItemSplit(train, cold, positives, among_cold.tocsr(), train.copy())


@dataclass
class ColdUserSplit:
    """New-user protocol: some users are absent from training and arrive with a short history.

    Attributes
    ----------
    train : csr (n_users, n_items), float32 ones
        Every interaction of the warm users; the cold users' rows are empty.
    cold_users : ndarray of int64
        The held-out users (sorted).
    history : csr (n_users, n_items), float32 ones
        The cold users' observed interactions (folded in, or added to a retrain); other rows empty.
    positives : csr (n_users, n_items), float32 ones
        The cold users' other interactions rated >= ``relevance``: the targets.
    exclude : csr
        Non-candidates of the cold users: their history plus every item absent from ``train`` (an
        item the fold-in model never saw), the same for the fold-in model and the retrain.
    """

    train: sp.csr_matrix
    cold_users: np.ndarray
    history: sp.csr_matrix
    positives: sp.csr_matrix
    exclude: sp.csr_matrix

    @property
    def retrain(self) -> sp.csr_matrix:
        """What a retrain that includes the cold users learns from: ``train`` + ``history``."""
        out = (self.train + self.history).tocsr()
        out.data[:] = 1.0
        out.sort_indices()
        return out


def cold_user_split(
    interactions: sp.spmatrix,
    *,
    fraction: float = 0.1,
    history_fraction: float = 0.5,
    seed: int = 0,
    relevance: float | None = None,
) -> ColdUserSplit:
    """Hold out ``fraction`` of the users; split each one's interactions into history and targets.

    Parameters
    ----------
    interactions : scipy sparse (n_users, n_items)
        The whole log (values are ratings when ``relevance`` is given).
    fraction : float
        Share of the users with at least two interactions to hold out (at least one, and at least one
        user kept).
    history_fraction : float
        Share of each held-out user's interactions used as history (at least one, and at least one
        left as a target candidate).
    seed : int
        Seeds the choice of users and of each user's history.
    relevance : float, optional
        Target interactions rated at least this are relevant; None makes every one relevant.

    Returns
    -------
    ColdUserSplit
    """
    matrix = _check_matrix(interactions)
    fraction = _check_fraction(fraction, "fraction")
    history_fraction = _check_fraction(history_fraction, "history_fraction")
    n_users, n_items = matrix.shape
    counts = np.diff(matrix.indptr)
    eligible = np.flatnonzero(counts >= 2)
    if len(eligible) < 1 or np.count_nonzero(counts) < 2:
        raise ValueError("interactions: need at least two users, one of them with two or more interactions")
    n_cold = min(max(int(round(fraction * np.count_nonzero(counts))), 1), len(eligible), np.count_nonzero(counts) - 1)
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=n_cold, replace=False)).astype(np.int64)
    is_cold = np.zeros(n_users, dtype=bool)
    is_cold[cold] = True
    coo = matrix.tocoo()
    # A seeded random key per entry, ranked within its row: the lowest ranks form the history.
    keys = rng.random(coo.nnz)
    order = np.lexsort((keys, coo.row))
    row_sorted = coo.row[order]
    start_of_row = np.searchsorted(row_sorted, row_sorted, side="left")
    rank = np.empty(coo.nnz, dtype=np.int64)
    rank[order] = np.arange(coo.nnz) - start_of_row
    n_history = np.clip(np.round(history_fraction * counts).astype(np.int64), 1, np.maximum(counts - 1, 1))
    cold_entry = is_cold[coo.row]
    in_history = cold_entry & (rank < n_history[coo.row])
    in_target = cold_entry & ~in_history

    def part(mask):
        return sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=matrix.shape)

    train = _ones(part(~cold_entry))
    history = _ones(part(in_history))
    positives = _relevant(part(in_target), relevance)
    unseen = np.flatnonzero(np.diff(train.tocsc().indptr) == 0)
    exclude = own_and_unseen(history, unseen, rows=cold)
    for m in (train, history, positives):
        m.sort_indices()
    return ColdUserSplit(train, cold, history, positives, exclude)


class VectorOverride(Recommender):
    """A fitted model whose user and/or item vectors are replaced on some rows (cold users or items).

    Scores of every other row are the wrapped model's exactly; the blocks are the wrapped model's.

    Parameters
    ----------
    model : Recommender
        The fitted model.
    user_rows, user_vectors : array-like, optional
        Users whose vectors are replaced, and their new vectors (len(user_rows) x D).
    item_rows, item_vectors : array-like, optional
        The same for items.
    """

    def __init__(self, model: Recommender, *, user_rows=None, user_vectors=None, item_rows=None, item_vectors=None):
        self.model = model
        self.kind = model.kind
        self._users = self._replace(model.user_vectors(), user_rows, user_vectors, "user")
        self._items = self._replace(model.item_vectors(), item_rows, item_vectors, "item")

    @staticmethod
    def _replace(base: np.ndarray, rows, vectors, what: str) -> np.ndarray:
        if rows is None and vectors is None:
            return base
        if rows is None or vectors is None:
            raise ValueError(f"{what}_rows and {what}_vectors must be given together")
        rows = np.asarray(rows, dtype=np.int64).ravel()
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(rows), base.shape[1]):
            raise ValueError(f"{what}_vectors must have shape {(len(rows), base.shape[1])}, got {vectors.shape}")
        if len(rows) and (rows.min() < 0 or rows.max() >= base.shape[0]):
            raise ValueError(f"{what}_rows must lie in [0, {base.shape[0]})")
        if not np.isfinite(vectors).all():
            raise ValueError(f"{what}_vectors hold NaN or infinite values")
        out = np.array(base, dtype=np.float32, copy=True)
        out[rows] = vectors
        return out

    @property
    def n_users(self) -> int:
        return self._users.shape[0]

    @property
    def n_items(self) -> int:
        return self._items.shape[0]

    def user_vectors(self) -> np.ndarray:
        return self._users

    def item_vectors(self) -> np.ndarray:
        return self._items

    def blocks(self) -> list[ScoreBlock]:
        return self.model.blocks()


def cold_item_vectors(model: Recommender, features: np.ndarray, items) -> np.ndarray:
    """Item vectors of ``items`` computed from their content rows alone (no interaction used).

    Models with ``item_vectors_from(features)`` (the content-aware ones) use it; a content profile's
    item vectors already are the content vectors. An ID-only model has no such path: TypeError.
    """
    from ..models import ContentProfile

    items = np.asarray(items, dtype=np.int64)
    if hasattr(model, "item_vectors_from"):
        rows = np.asarray(features.matrix if hasattr(features, "matrix") else features)[items]
        return np.asarray(model.item_vectors_from(rows), dtype=np.float32)
    if isinstance(model, ContentProfile):
        return model.item_vectors()[items]
    raise TypeError(f"model: a {type(model).__name__} cannot score items from content (no item_vectors_from)")


def fold_in_users(model: Recommender, history: sp.spmatrix, users) -> np.ndarray:
    """User vectors of ``users`` from their ``history`` rows, without retraining the model.

    Models with ``fold_in(history_rows)`` use it (a closed-form solve for iALS/EASE, popularity's
    constant); a content profile is the mean content vector of the history, as in its ``fit``. Any
    other model: TypeError naming it.
    """
    from ..models import ContentProfile

    users = np.asarray(users, dtype=np.int64)
    rows = sp.csr_matrix(history)[users]
    if hasattr(model, "fold_in"):
        return np.asarray(model.fold_in(rows), dtype=np.float32)
    if isinstance(model, ContentProfile):
        # The profile of fit(): the history's mean content vector (the same arithmetic, rows only).
        profile = ContentProfile(model.features, feature_blocks=model.feature_blocks, use_values=model.use_values)
        return profile.fit(rows).user_vectors()
    raise TypeError(f"model: a {type(model).__name__} cannot fold in new users (no fold_in)")


def random_ndcg(positives: sp.spmatrix, exclude: sp.spmatrix | None, n_items: int, k: int = 10) -> float:
    """Exact expected NDCG@k of a uniformly random ranking of each user's candidates, averaged over users.

    A user with ``n`` candidates of which ``m`` are relevant puts a relevant item at each position with
    probability ``m / n``, so ``E[DCG@k] = (m / n) * sum_{p < min(k, n)} 1 / log2(p + 2)``, divided by
    the ideal ``sum_{p < min(m, k)} 1 / log2(p + 2)`` (the evaluator's definition). Users without
    relevant items are skipped, as the evaluator skips them.
    """
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    positives = sp.csr_matrix(positives, dtype=np.float64)
    if exclude is not None:
        exclude = sp.csr_matrix(exclude, dtype=np.float64)
        exclude.data[:] = 1.0
        # A relevant item that is excluded is not a candidate: it cannot be ranked.
        kept = positives - positives.multiply(exclude)
        kept.eliminate_zeros()
        n_excluded = np.diff(exclude.indptr)
    else:
        kept, n_excluded = positives, np.zeros(positives.shape[0], dtype=np.int64)
    n_pos = np.diff(positives.indptr)
    users = np.flatnonzero(n_pos > 0)
    if len(users) == 0:
        raise ValueError("positives has no relevant entry")
    m = np.diff(kept.indptr)[users].astype(np.float64)
    n = (n_items - n_excluded[users]).astype(np.float64)
    discount = 1.0 / np.log2(np.arange(2, k + 2))
    cumulative = np.concatenate([[0.0], np.cumsum(discount)])
    dcg = np.divide(m, n, out=np.zeros_like(m), where=n > 0) * cumulative[np.minimum(n, k).astype(np.int64)]
    # Ideal DCG uses the user's held-out positives as the evaluator does (excluded ones included).
    idcg = cumulative[np.minimum(n_pos[users], k)]
    return float(np.mean(dcg / idcg))


def cold_item_landing(model: Recommender, split: ColdItemSplit, k: int = 10) -> dict:
    """Where cold items land when the whole catalogue is ranked (training items excluded).

    Returns
    -------
    dict
        ``cold_share@k``: share of the evaluated users' top-k slots held by cold items (the catalogue
        share of cold items is ``cold_catalogue_share``); ``median_percentile``: median over relevant
        (user, cold item) pairs of the item's rank among the user's candidates as a percentile
        (0 = top, 100 = bottom); ``in_top@k``: share of those pairs ranked in the top k.
    """
    users = np.flatnonzero(np.diff(split.positives.indptr) > 0)
    exclude = split.exclude_catalogue[users]
    top = topk(model.user_vectors()[users], model.item_vectors(), model.n_items, exclude=exclude)
    ranked = top.indices
    is_cold = np.zeros(model.n_items + 1, dtype=bool)  # the extra slot absorbs the -1 padding
    is_cold[split.cold_items] = True
    n_candidates = model.n_items - np.diff(exclude.indptr)
    position = np.full((len(users), model.n_items + 1), -1, dtype=np.int64)
    rows = np.repeat(np.arange(len(users)), ranked.shape[1])
    position[rows, ranked.ravel()] = np.tile(np.arange(ranked.shape[1]), len(users))
    pos = split.positives[users].tocoo()
    ranks = position[pos.row, pos.col]
    if (ranks < 0).any():
        raise ValueError("split: a target item is excluded from its user's candidates")
    percentile = 100.0 * ranks / np.maximum(n_candidates[pos.row] - 1, 1)
    return {
        f"cold_share@{k}": float(is_cold[ranked[:, :k]].mean()),
        "cold_catalogue_share": float(len(split.cold_items) / model.n_items),
        "median_percentile": float(np.median(percentile)),
        f"in_top@{k}": float(np.mean(ranks < k)),
        "n_users": int(len(users)),
    }
