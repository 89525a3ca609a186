r"""Top-k ranking metrics computed from the engine's id lists against held-out CSR positives.

Inputs
------
``ranked`` (U x K, int64) is what :func:`mmrec_fast.topk` returns in ``TopK.indices``: each user's
items best first, training items already excluded (``exclude=``), ``-1`` padding at the end when a
user has fewer than K eligible items. ``positives`` (U x I, scipy sparse) holds each user's held-out
relevant items (every stored non-zero entry is relevant). Row ``u`` of both is the same user.

Everything is vectorised (NumPy, no per-user Python loop): membership of each listed id in its
user's positive row is read from a scratch marker over (block of users x catalogue) keys that is set
and cleared per block, giving the sparse list of hits (user, position); every metric is then a
per-user weighted count of those hits (``bincount``). Cost O(U*K + nnz); no U x I array is formed.
Full-catalogue evaluation of MovieLens-100K (943 x 1,682 ranked ids, every metric at k = 5, 10, 20,
``scores`` given) takes about 0.1 s on one core of a busy 2-core machine.

Definitions
-----------
Notation for one user: ``rel_p`` = 1 if the item at (0-based) position ``p`` is a held-out positive,
``n_pos`` = number of held-out positives (the CSR row's non-zeros), ``tp@k = sum_{p<k} rel_p``.
These follow Cornac 3.0.1 (``cornac/metrics/ranking.py`` with ``eval_methods.ranking_eval``):

- ``precision@k = tp@k / k`` -- always divided by k, even when fewer than k items are listed.
- ``recall@k = tp@k / n_pos``.
- ``f1@k = 2 P R / (P + R)``, 0 when ``P + R = 0``.
- ``hit@k = 1`` if ``tp@k > 0`` else 0.
- ``ndcg@k = DCG@k / IDCG@k`` with binary gains and log2 discounts:
  ``DCG@k = sum_{p<k} rel_p / log2(p + 2)``, ``IDCG@k = sum_{p < min(n_pos, k)} 1 / log2(p + 2)``
  (Cornac computes IDCG as the DCG of the positive list itself, truncated at k).
- ``mrr@k = 1 / (p* + 1)`` for the first hit ``p* < k``, else 0 (RecBole's MRR@k).
- ``map@k = (sum_{p<k} rel_p * tp@(p+1) / (p + 1)) / min(n_pos, k)`` (RecBole's MAP@k).
- ``coverage@k`` = number of distinct items appearing in the evaluated users' top-k lists divided
  by the catalogue size ``n_items`` (one number, no per-user value).

Full-ranking metrics need every candidate ranked (see ``n_candidates``). With ``m`` = number of
positives among the listed candidates (= n_pos unless some positive was excluded) and ``n_neg`` =
candidates listed that are not positive:

- ``auc`` = fraction of (positive, negative) candidate pairs with the positive scored strictly
  higher: ``sum_{p: rel_p} #{negatives ranked below p} / (m * n_neg)`` (Cornac's ``AUC`` with its
  default negatives = every non-positive candidate). Undefined (NaN, left out of the mean) when
  ``m = 0`` or ``n_neg = 0``.
- ``map`` = average precision over the full ranking,
  ``(1/m) sum_{p: rel_p} tp@(p+1) / (p + 1)`` (Cornac's ``MAP``); 0 when ``m = 0``.
- ``mrr = 1 / (p* + 1)`` for the first hit anywhere in the ranking (Cornac's ``MRR``); 0 when no
  positive is among the candidates (Cornac raises there).

Ties: Cornac's AUC counts tied (positive, negative) pairs as 0 and its MAP ranks ties at their
*last* tied position (``rankdata(..., "max")``). Pass ``scores`` (``TopK.scores``) to reproduce
that exactly; without scores the list order is taken as strict (the engine breaks ties by lower item
id), which is what Cornac yields whenever scores are distinct.

Users: a user is evaluated iff its ``positives`` row has at least one entry; users without held-out
positives are skipped (Cornac skips them; RecBole drops them), and every mean is over the evaluated
users. ``n_users`` in the result is their number.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

__all__ = ["evaluate", "evaluate_per_user", "candidate_counts", "AT_K_METRICS", "FULL_METRICS", "ALL_METRICS"]

#: Metrics computed at every k of ``ks`` (keys ``"<name>@<k>"``).
AT_K_METRICS = ("precision", "recall", "f1", "ndcg", "hit", "mrr@k", "map@k", "coverage")
#: Metrics over the full ranking of the candidates (keys ``"auc"``, ``"map"``, ``"mrr"``).
FULL_METRICS = ("auc", "map", "mrr")
ALL_METRICS = AT_K_METRICS + FULL_METRICS

# Entries of the per-block scratch arrays of the hit search (block rows x catalogue): 256 Ki
# entries (1.25 MB) stay in cache; a catalogue larger than this is handled one user at a time.
_SCRATCH_ENTRIES = 1 << 18


# ---------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------
def _check_ranked(ranked, n_items: int) -> np.ndarray:
    from ..validation import to_numpy

    arr = to_numpy(ranked, "ranked")
    if arr.ndim != 2:
        raise ValueError(f"ranked: expected a 2-D array (users x list length), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"ranked: the lists need at least one column, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"ranked: expected integer item ids (TopK.indices), got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.int64)
    if arr.size:
        lo, hi = arr.min(), arr.max()
        if lo < -1 or hi >= n_items:
            raise ValueError(f"ranked: item ids must lie in 0..{n_items - 1} (or -1 for padding), got range {lo}..{hi}")
    return arr


def _check_positives(positives, n_users: int, n_items) -> sp.csr_matrix:
    if not sp.issparse(positives):
        raise ValueError(
            f"positives: expected a scipy.sparse matrix (users x items), got "
            f"{type(positives).__name__} (never a dense users x items array)"
        )
    pos = sp.csr_matrix(positives, copy=True)
    if pos.shape[0] != n_users:
        raise ValueError(
            f"positives: has {pos.shape[0]} rows but ranked has {n_users} users (row u of both must be the same user)"
        )
    if n_items is not None and pos.shape[1] != n_items:
        raise ValueError(f"positives: has {pos.shape[1]} columns but n_items={n_items}")
    pos.sum_duplicates()  # sorts indices, merges repeated entries
    pos.eliminate_zeros()  # an explicit 0 is not a relevant item
    return pos


def _check_ks(ks) -> list[int]:
    if isinstance(ks, numbers.Integral):
        ks = (ks,)
    try:
        ks = list(ks)
    except TypeError as exc:
        raise ValueError(f"ks: expected an int or a sequence of ints, got {ks!r}") from exc
    out = []
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
            raise ValueError(f"ks: every k must be an integer >= 1, got {k!r}")
        out.append(int(k))
    return sorted(set(out))


def _check_metrics(metrics):
    if metrics is None:
        return set(AT_K_METRICS), set(FULL_METRICS), False
    if isinstance(metrics, str):
        metrics = (metrics,)
    names = [str(m).lower() for m in metrics]
    unknown = [m for m in names if m not in ALL_METRICS]
    if unknown:
        raise ValueError(f"metrics: unknown name(s) {unknown}; choose from {list(ALL_METRICS)}")
    return {m for m in names if m in AT_K_METRICS}, {m for m in names if m in FULL_METRICS}, True


def _check_n_candidates(n_candidates, n_users: int):
    if n_candidates is None:
        return None
    arr = np.asarray(n_candidates)
    if arr.dtype.kind not in "iu" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise ValueError(f"n_candidates: expected integer counts, got dtype {arr.dtype}")
    arr = np.broadcast_to(arr.astype(np.int64), (n_users,)) if arr.ndim == 0 else arr.astype(np.int64)
    if arr.shape != (n_users,):
        raise ValueError(f"n_candidates: expected an int or shape ({n_users},), got {arr.shape}")
    if arr.size and arr.min() < 0:
        raise ValueError("n_candidates: counts must be >= 0")
    return arr


def _check_scores(scores, shape):
    if scores is None:
        return None
    from ..validation import to_numpy

    s = to_numpy(scores, "scores")
    if s.shape != shape:
        raise ValueError(f"scores: expected shape {shape} (like ranked), got {s.shape}")
    if s.dtype.kind not in "fiu":
        raise ValueError(f"scores: expected real numbers, got dtype {s.dtype}")
    # float32 scores stay float32 (no U x K float64 copy); only the hits' values are gathered later.
    return s if s.dtype.kind == "f" else s.astype(np.float64)


def candidate_counts(n_items: int, exclude=None, n_users: int | None = None) -> np.ndarray:
    """Per-user number of eligible items: ``n_items`` minus the user's distinct excluded items.

    Parameters
    ----------
    n_items : int
        Catalogue size.
    exclude : scipy.sparse matrix (U, n_items), optional
        The ``exclude=`` passed to :func:`mmrec_fast.topk` (e.g. the training CSR).
    n_users : int, optional
        Number of users when ``exclude`` is None.
    """
    if exclude is None:
        if n_users is None:
            raise ValueError("n_users: needed when exclude is None")
        return np.full(int(n_users), int(n_items), dtype=np.int64)
    if not sp.issparse(exclude):
        raise ValueError(f"exclude: expected a scipy.sparse matrix, got {type(exclude).__name__}")
    ex = sp.csr_matrix(exclude, copy=True)
    if ex.shape[1] != n_items:
        raise ValueError(f"exclude: has {ex.shape[1]} columns but n_items={n_items}")
    ex.sum_duplicates()
    # topk excludes every stored entry (even an explicit 0), so count stored entries.
    return int(n_items) - np.diff(ex.indptr).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# the kernel
# ---------------------------------------------------------------------------------------------
def evaluate_per_user(
    ranked, positives, ks=(5, 10, 20), *, n_candidates=None, metrics=None, n_items=None, scores=None
) -> dict:
    """Per-user metric values; see :func:`evaluate` for the arguments and the module docstring for
    the definitions.

    Returns
    -------
    dict of str -> ndarray of float64, shape (U,)
        One array per metric key (``"ndcg@10"``, ``"auc"``, ...), NaN for users that are not
        evaluated (no held-out positive) and, for ``auc``, where it is undefined; plus
        ``"evaluated"`` (bool, shape (U,)) and ``"n_pos"`` (int64). Coverage is a catalogue-level
        number and has no per-user value: it is only in :func:`evaluate`.
    """
    out, _ = _evaluate(
        ranked,
        positives,
        ks,
        n_candidates=n_candidates,
        metrics=metrics,
        n_items=n_items,
        scores=scores,
        want_coverage=False,
    )
    return out


def evaluate(ranked, positives, ks=(5, 10, 20), *, n_candidates=None, metrics=None, n_items=None, scores=None) -> dict:
    """Mean ranking metrics over the users with held-out positives.

    Parameters
    ----------
    ranked : array-like of int, shape (U, K)
        Item ids per user, best first, ``-1`` padding at the end (``TopK.indices``); training items
        must already be excluded. Ids may not repeat within a row.
    positives : scipy.sparse matrix, shape (U, I)
        Held-out relevant items (stored non-zeros). Users with an empty row are not evaluated.
    ks : int or sequence of int
        Cut-offs for the ``@k`` metrics. A k larger than K is allowed only for users whose list is
        complete (all their candidates listed); the list is then the whole ranking and
        ``precision@k`` still divides by k, as Cornac does.
    n_candidates : int or array-like of int, shape (U,), optional
        Number of eligible items per user (catalogue size minus excluded items; see
        :func:`candidate_counts`). A user's list is *complete* when it lists that many items.
        ``None``: a list is taken as complete when it ends in ``-1`` padding (the engine pads only
        after listing every eligible item) or lists all ``n_items`` items.
    metrics : sequence of str, optional
        Names from ``AT_K_METRICS`` (computed at every k) and ``FULL_METRICS``. ``None``: every
        ``@k`` metric, plus the full-ranking ones when every evaluated user's list is complete
        (silently left out otherwise -- never approximated). Naming a full-ranking metric
        explicitly when some list is incomplete raises ``ValueError`` (``mrr`` only needs lists that
        are complete or contain a hit, since the first hit's rank is then known).
    n_items : int, optional
        Catalogue size (default: ``positives.shape[1]``); the denominator of coverage.
    scores : array-like of float, shape (U, K), optional
        The listed items' scores (``TopK.scores``), non-increasing along each row. Only used to
        resolve ties in ``auc`` and ``map`` exactly as Cornac does (see the module docstring).

    Returns
    -------
    dict of str -> float
        ``"precision@10"``, ``"recall@10"``, ``"f1@10"``, ``"ndcg@10"``, ``"hit@10"``,
        ``"mrr@10"``, ``"map@10"``, ``"coverage@10"`` for each k, ``"auc"``, ``"map"``, ``"mrr"``
        when computed, and ``"n_users"`` (number of evaluated users, an int). With no evaluated
        user every metric is NaN.

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> ranked = np.array([[3, 1, 0, 2]])            # complete ranking of 4 candidates
    >>> positives = sp.csr_matrix(np.array([[0, 1, 1, 0]]))
    >>> r = evaluate(ranked, positives, ks=[2])
    >>> r["precision@2"], r["recall@2"], r["map"], r["auc"]
    (0.5, 0.5, 0.5, 0.25)
    """
    per_user, coverage = _evaluate(
        ranked,
        positives,
        ks,
        n_candidates=n_candidates,
        metrics=metrics,
        n_items=n_items,
        scores=scores,
        want_coverage=True,
    )
    evaluated = per_user.pop("evaluated")
    per_user.pop("n_pos")
    n_eval = int(evaluated.sum())
    result = {}
    for key, values in per_user.items():
        vals = values[evaluated]
        if key == "auc":
            vals = vals[~np.isnan(vals)]
        result[key] = float(vals.mean()) if len(vals) else float("nan")
    result.update(coverage)
    result["n_users"] = n_eval
    return result


def _evaluate(ranked, positives, ks, *, n_candidates, metrics, n_items, scores, want_coverage):
    """Per-user metric arrays (NaN for users without positives) and the coverage values."""
    r_all, pos, ks, at_k, full, explicit, ncand, s_all, n_items = _checked_inputs(
        ranked, positives, ks, n_candidates, metrics, n_items, scores
    )
    n_pos = np.diff(pos.indptr).astype(np.int64)
    hits = _Hits.of(r_all, pos, n_pos)
    complete = _complete_rows(hits, ncand, ks, r_all.shape[1], n_items)
    full = _computable_full_metrics(hits, complete, full, explicit, ncand)

    out, coverage = _metrics_at_k(hits, r_all, ks, at_k, n_items, want_coverage)
    out.update(_full_ranking_metrics(hits, s_all, full))
    out["evaluated"] = hits.evaluated
    out["n_pos"] = n_pos
    return out, coverage


def _checked_inputs(ranked, positives, ks, n_candidates, metrics, n_items, scores):
    """Every argument of :func:`_evaluate` validated (errors name the argument)."""
    if n_items is not None and (isinstance(n_items, bool) or not isinstance(n_items, numbers.Integral) or n_items < 1):
        raise ValueError(f"n_items: expected a positive integer, got {n_items!r}")
    if not sp.issparse(positives):
        _check_positives(positives, 0, None)  # raises the "expected a scipy.sparse" error
    n_items = int(positives.shape[1]) if n_items is None else int(n_items)
    r_all = _check_ranked(ranked, n_items)
    pos = _check_positives(positives, r_all.shape[0], n_items)
    ks = _check_ks(ks)
    at_k, full, explicit = _check_metrics(metrics)
    ncand = _check_n_candidates(n_candidates, r_all.shape[0])
    s_all = _check_scores(scores, r_all.shape)
    if s_all is not None:
        # Listed part of each row non-increasing and free of NaN (padding slots are ignored).
        # ``not (next <= prev)`` is true for a rise and for NaN alike: one pass over U x K.
        valid = r_all >= 0
        bad = ~(s_all[:, 1:] <= s_all[:, :-1]) & valid[:, 1:]
        bad_first = np.isnan(s_all[:, 0]) & valid[:, 0]
        if bad.any() or bad_first.any():
            u = int(np.flatnonzero(bad.any(axis=1) | bad_first)[0])
            if np.isnan(s_all[u][valid[u]]).any():
                raise ValueError(f"scores: row {u} holds NaN for a listed item")
            raise ValueError(f"scores: row {u} is not sorted in non-increasing order")
    return r_all, pos, ks, at_k, full, explicit, ncand, s_all, n_items


@dataclass
class _Hits:
    """The sparse hit list: one entry per (evaluated user, listed positive), row-major, positions
    increasing within a row. Every metric is a per-user sum over these entries."""

    hr: np.ndarray  # user of each hit
    hp: np.ndarray  # 0-based list position of each hit
    hq: np.ndarray  # rank of each hit among the user's hits (1-based): tp at its position
    n_hits: np.ndarray  # listed positives per user
    n_valid: np.ndarray  # listed (non-padding) items per user
    n_pos: np.ndarray  # held-out positives per user
    evaluated: np.ndarray  # users with at least one positive

    @classmethod
    def of(cls, r_all: np.ndarray, pos: sp.csr_matrix, n_pos: np.ndarray) -> _Hits:
        evaluated = n_pos > 0
        hr, hp, n_hits, n_valid = _hit_lists(r_all, pos, evaluated)
        hit_start = np.cumsum(n_hits) - n_hits  # first entry of each user in hr/hp
        hq = np.arange(len(hr), dtype=np.int64) - hit_start[hr] + 1
        return cls(hr, hp, hq, n_hits, n_valid, n_pos, evaluated)

    @property
    def n_users(self) -> int:
        return self.evaluated.shape[0]

    def per_user(self, values: np.ndarray) -> np.ndarray:
        """``values`` for evaluated users, NaN for the others."""
        arr = np.full(self.n_users, np.nan)
        ev_idx = np.flatnonzero(self.evaluated)
        arr[ev_idx] = values[ev_idx]
        return arr

    def row_sum(self, mask: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-user sum of ``weights`` (or counts) over the hits selected by ``mask``."""
        w = None if weights is None else weights[mask]
        return np.bincount(self.hr[mask], weights=w, minlength=self.n_users).astype(np.float64)

    def first_position(self) -> np.ndarray:
        """Each user's first hit position; beyond every k (k may exceed K for complete lists) if none."""
        first = np.full(self.n_users, np.iinfo(np.int64).max // 2, dtype=np.int64)
        first[self.hr[self.hq == 1]] = self.hp[self.hq == 1]
        return first


def _complete_rows(hits: _Hits, ncand, ks, K: int, n_items: int) -> np.ndarray:
    """Which users' lists are their whole ranking; errors for k beyond an incomplete list."""
    if ncand is not None:
        over = hits.n_valid > ncand
        if over.any():
            u = int(np.flatnonzero(over)[0])
            raise ValueError(
                f"n_candidates: user {u} has {ncand[u]} candidate(s) but ranked lists {hits.n_valid[u]} items"
            )
        complete = hits.n_valid == ncand
    else:
        complete = (hits.n_valid < K) | (hits.n_valid == n_items)
    # @k beyond the list: only meaningful when the list is the whole ranking.
    too_long = [k for k in ks if k > K]
    if too_long and (hits.evaluated & ~complete).any():
        u = int(np.flatnonzero(hits.evaluated & ~complete)[0])
        raise ValueError(
            f"ks: k={too_long[0]} exceeds the list length K={K}, but user {u}'s list is "
            f"not complete (more candidates than listed), so hits beyond position "
            f"{K} are unknown; compute top-{max(ks)} lists" + ("" if ncand is not None else " or pass n_candidates")
        )
    return complete


def _computable_full_metrics(hits: _Hits, complete: np.ndarray, full: set, explicit: bool, ncand) -> set:
    """The full-ranking metrics the lists allow (asking explicitly for one they do not is an error)."""
    incomplete_users = hits.evaluated & ~complete
    if incomplete_users.any():
        u = int(np.flatnonzero(incomplete_users)[0])
        why = f"user {u}'s list has {hits.n_valid[u]} of its " + (
            f"{ncand[u]} candidates" if ncand is not None else "candidates (no -1 padding and n_candidates not given)"
        )
        blocked = {m for m in full if m != "mrr"}
        if explicit and blocked:
            raise ValueError(
                f"metrics: {sorted(blocked)} need the full ranking of every candidate, "
                f"but {why}; request top-k with k = the catalogue size, or leave these "
                f"metrics out"
            )
        full = full - blocked
    # MRR needs the first hit's rank: known when it is listed, or when the list is complete.
    if "mrr" in full:
        unknown = hits.evaluated & (hits.n_hits == 0) & ~complete
        if unknown.any():
            if explicit:
                u = int(np.flatnonzero(unknown)[0])
                raise ValueError(
                    f"metrics: 'mrr' needs the rank of each user's first relevant item, "
                    f"but user {u}'s list is incomplete and holds no held-out positive; "
                    f"request longer lists or leave 'mrr' out"
                )
            full = full - {"mrr"}
    return full


def _metrics_at_k(hits: _Hits, r_all: np.ndarray, ks, at_k: set, n_items: int, want_coverage: bool):
    """Precision, recall, F1, hit, NDCG, MRR@k, MAP@k per user, and coverage@k, for every k."""
    hp, hq, n_pos = hits.hp, hits.hq, hits.n_pos
    # Discount table: disc[p] = 1/log2(p+2); idcg[m] = sum_{p<m} disc[p].
    kmax = max(max(ks), r_all.shape[1])
    disc = 1.0 / np.log2(np.arange(kmax, dtype=np.float64) + 2.0)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])
    npos = n_pos.astype(np.float64)
    first = hits.first_position()
    ev_idx = np.flatnonzero(hits.evaluated)
    out: dict = {}
    coverage: dict = {}
    hp_disc = disc[hp] if "ndcg" in at_k else None
    hq_over_pos = hq / (hp + 1.0)  # precision at each hit's position
    with np.errstate(divide="ignore", invalid="ignore"):  # only non-evaluated users divide by 0
        for k in ks:
            within = hp < k
            tp = hits.row_sum(within)
            prec, rec = tp / k, tp / npos
            if "precision" in at_k:
                out[f"precision@{k}"] = hits.per_user(prec)
            if "recall" in at_k:
                out[f"recall@{k}"] = hits.per_user(rec)
            if "f1" in at_k:
                denom = prec + rec
                out[f"f1@{k}"] = hits.per_user(np.where(denom > 0, 2 * prec * rec / denom, 0.0))
            if "hit" in at_k:
                out[f"hit@{k}"] = hits.per_user((tp > 0).astype(np.float64))
            if "ndcg" in at_k:
                out[f"ndcg@{k}"] = hits.per_user(hits.row_sum(within, hp_disc) / idcg[np.minimum(n_pos, k)])
            if "mrr@k" in at_k:
                out[f"mrr@{k}"] = hits.per_user(np.where(first < k, 1.0 / (first + 1.0), 0.0))
            if "map@k" in at_k:
                out[f"map@{k}"] = hits.per_user(hits.row_sum(within, hq_over_pos) / np.minimum(npos, k))
            if want_coverage and "coverage" in at_k:
                top = r_all[ev_idx, : min(k, r_all.shape[1])]
                seen = np.zeros(n_items, dtype=bool)
                seen[top[top >= 0]] = True
                coverage[f"coverage@{k}"] = float(seen.sum()) / n_items if len(ev_idx) else float("nan")
    return out, coverage


def _full_ranking_metrics(hits: _Hits, s_all, full: set) -> dict:
    """MRR, MAP and AUC over each user's whole ranking (Cornac's tie rules when scores are given)."""
    out: dict = {}
    m_hits = hits.n_hits
    m = m_hits.astype(np.float64)
    everything = np.ones(len(hits.hr), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        if "mrr" in full:
            first = hits.first_position()
            out["mrr"] = hits.per_user(np.where(m_hits > 0, 1.0 / (first + 1.0), 0.0))
        if "auc" in full or "map" in full:
            if s_all is None:
                end, ch_end = hits.hp, hits.hq  # strict order: each position is its own tie group
            else:
                end, ch_end = _tie_ends(s_all, hits.hr, hits.hp, hits.n_valid)
            if "map" in full:
                # Cornac: rankdata(-scores, "max") of each positive among candidates (end + 1) and
                # among positives (ch_end): AP = mean over listed positives of ch_end / (end + 1).
                ap = hits.row_sum(everything, ch_end / (end + 1.0))
                out["map"] = hits.per_user(np.where(m_hits > 0, ap / np.maximum(m, 1.0), 0.0))
            if "auc" in full:
                n_neg = hits.n_valid.astype(np.float64) - m
                # Negatives ranked strictly below a positive: all negatives minus those at or above
                # it, ties included ((end + 1) slots hold ch_end positives).
                below = n_neg[hits.hr] - ((end + 1.0) - ch_end)
                pairs = hits.row_sum(everything, below)
                ok = (m > 0) & (n_neg > 0)
                out["auc"] = hits.per_user(np.where(ok, pairs / (m * n_neg), np.nan))
    return out


def _tie_ends(s_all: np.ndarray, hr: np.ndarray, hp: np.ndarray, n_valid: np.ndarray):
    """For each hit: the last listed position tied with it (``end``) and the hits at or before it.

    Rows are sorted (non-increasing), so ``end`` is the last position whose score is still >= the
    hit's score: a vectorised binary search over all hits at once (ceil(log2 K) rounds of O(hits)
    work; no U x K temporary).
    """
    U, K = s_all.shape
    target = s_all[hr, hp]
    lo = hp.copy()
    hi = n_valid[hr] - 1  # the last listed slot; padding never joins a tie group
    while True:
        active = lo < hi
        if not active.any():
            break
        mid = (lo + hi + 1) // 2
        ok = s_all[hr, np.where(active, mid, lo)] >= target
        lo = np.where(active & ok, mid, lo)
        hi = np.where(active & ~ok, mid - 1, hi)
    end = lo
    # Hits of the same row at positions <= end: hit keys (row, position) are sorted.
    keys = hr * np.int64(K + 1) + hp
    row_start = np.searchsorted(keys, hr * np.int64(K + 1))
    ch_end = np.searchsorted(keys, hr * np.int64(K + 1) + end, side="right") - row_start
    return end, ch_end


def _hit_lists(r_all: np.ndarray, pos: sp.csr_matrix, evaluated: np.ndarray):
    """(user, position) of every listed held-out positive, plus hits and listed items per user.

    Also validates the lists (trailing padding, no repeated id). Works in blocks of users with two
    scratch arrays over (block rows x catalogue) local keys ``row * n_items + item``: a marker of the
    block's positives, set and cleared per block (so the cost is O(U*K + nnz), not O(U*I)), and a
    position table that exposes repeated ids. Scratch memory is bounded by
    ``max(_SCRATCH_ENTRIES, n_items)`` entries, independent of the number of users.
    """
    U, K = r_all.shape
    n_items = pos.shape[1]
    indptr = pos.indptr.astype(np.int64)
    valid_all = r_all >= 0
    n_valid = valid_all.sum(axis=1).astype(np.int64)
    # Padding is trailing iff every listed slot comes before the row's count of listed items.
    misplaced = valid_all & (np.arange(K) >= n_valid[:, None])
    if misplaced.any():
        row = int(np.flatnonzero(misplaced.any(axis=1))[0])
        raise ValueError(f"ranked: -1 padding must be trailing, but row {row} lists an item after a -1")
    # Small blocks keep the scratch arrays cache-resident (the scatter/gathers below are random).
    rows_per_block = max(1, _SCRATCH_ENTRIES // max(n_items, K))
    scratch = np.empty(rows_per_block * n_items, dtype=np.int32)
    marker = np.zeros(rows_per_block * n_items, dtype=bool)
    pos_rows = np.repeat(np.arange(U, dtype=np.int64), np.diff(indptr))
    indices = pos.indices.astype(np.int64)
    slot = np.arange(rows_per_block * K, dtype=np.int32)  # slot number of each (row, position)
    local_row = np.repeat(np.arange(rows_per_block, dtype=np.int64), K).reshape(rows_per_block, K)
    hrs, hps = [], []
    for b0 in range(0, U, rows_per_block):
        b1 = min(U, b0 + rows_per_block)
        nb = b1 - b0
        r = r_all[b0:b1]
        v = valid_all[b0:b1]
        # Local key of every slot; padding slots point at item 0 and are masked out below.
        q = (local_row[:nb] * n_items + np.maximum(r, 0)).ravel()
        vf = v.ravel()
        # Repeated id: two listed slots write the same scratch cell, so one reads the other's slot.
        sl = slot[: nb * K]
        scratch[q[vf]] = sl[vf]
        dup = vf & (scratch[q] != sl)
        if dup.any():
            j = int(np.flatnonzero(dup)[0])
            raise ValueError(f"ranked: row {b0 + j // K} lists item {int(r.flat[j])} more than once")
        lo, hi = indptr[b0], indptr[b1]
        pk = (pos_rows[lo:hi] - b0) * np.int64(n_items) + indices[lo:hi]
        marker[pk] = True
        hit = np.flatnonzero(marker[q] & vf)  # row-major: positions increase within a row
        marker[pk] = False
        hrs.append(b0 + hit // K)
        hps.append(hit % K)
    hr = np.concatenate(hrs) if hrs else np.empty(0, dtype=np.int64)
    hp = np.concatenate(hps) if hps else np.empty(0, dtype=np.int64)
    return hr, hp, np.bincount(hr, minlength=U).astype(np.int64), n_valid
