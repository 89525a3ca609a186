"""The engine's public operations: full-catalogue top-k with softmax normaliser, dense and pair scores.

This module is the single dispatch point of each operation: it validates, converts, chooses the
backend (through :mod:`mmrec_fast.backends`), streams users through it in chunks (progress bar,
Ctrl-C between chunks) and wraps the results.
"""

from __future__ import annotations

import numpy as np

from . import _arrays, validation
from ._search import search
from .index import ItemIndex
from .int8 import check_precision
from .result import PairScores, TopK

__all__ = ["topk", "score", "score_pairs", "DEFAULT_MAX_DENSE_ELEMENTS"]

DEFAULT_MAX_DENSE_ELEMENTS = 100_000_000  # score(): 400 MB of float32 before we refuse


def _index_for(items, backend: str, item_block: int | None, users=None) -> ItemIndex:
    if isinstance(items, ItemIndex):
        items.check_compatible(backend, item_block)
        return items
    return ItemIndex(items, backend=backend, item_block=item_block, _persistent=False, _users=users)


def topk(
    users,
    items,
    k,
    *,
    exclude=None,
    allow=None,
    ban=None,
    candidates=None,
    temperature=1.0,
    normalizer=True,
    precision=None,
    backend="auto",
    user_block=None,
    item_block=None,
    num_threads=None,
    progress=False,
) -> TopK:
    """Each user's k best items and the softmax over the whole eligible catalogue, without a U x I matrix.

    Parameters
    ----------
    users : array-like, shape (U, d)
        User embeddings: NumPy array, torch tensor or CuPy array; float16/32/64 or integer, any memory
        order (non-contiguous input is copied once). Math is float32 with float32 accumulation.
    items : array-like of shape (I, d), or ItemIndex
        Item embeddings, or an :class:`~mmrec_fast.ItemIndex` prepared for repeated queries (then this is
        ``items.topk(...)``: filters and results in the index's external ids).
    k : int
        List length (>= 1). May exceed the number of eligible items: trailing slots are padded with
        index -1, score -inf and probability 0.
    exclude : scipy.sparse matrix (U, I), tuple (indptr, indices), or list of U id sequences, optional
        Items removed per user (e.g. already seen): neither listed nor counted in the normaliser. Only a
        tuple is read as CSR ``(indptr, indices)``; a list holds one sequence of item ids per user.
    allow : array-like of int ids or bool mask of length I, optional
        Only these items are eligible, for every user (ids in any order, duplicates fine).
    ban : array-like of int ids or bool mask of length I, optional
        These items are never eligible, for any user.
    candidates : same forms as ``exclude``, optional
        Per-user candidate lists: user u may only get items in ``candidates[u]`` (only those are
        scored). Filters compose: eligible(u) = allowed ∩ candidates(u) - banned - exclude(u); the
        probabilities and the normaliser are over eligible(u) only, and a user with no eligible item
        gets padding and a -inf normaliser.
    temperature : float
        Softmax temperature (> 0): probabilities are ``exp(score / T) / sum(exp(score / T))``.
    normalizer : bool
        False: top-k only (like FAISS) -- the normaliser is not computed (the kernels skip the exp
        work) and the result's ``log_normalizer`` and ``probs`` are ``None``.
    precision : {"fp32", "int8", "auto"}, optional
        ``None``: an :class:`~mmrec_fast.ItemIndex`'s own precision, else "fp32". "fp32": the float32
        engine. "int8" (native backend, host users): a certified int8 first pass then exact float32
        rescoring of the survivors -- ids and scores **bitwise equal** to "fp32"; the normaliser comes
        from the int8 scores, with a proven per-user bound in ``TopK.log_normalizer_bound``. The items'
        int8 form is kept by an :class:`~mmrec_fast.ItemIndex` (built on first use); raw arrays are
        quantised per call. "auto": "int8" where it is expected to be faster
        (:func:`mmrec_fast.int8.auto_selects_int8`: VNNI, or a few users on an index with AVX2), else
        "fp32"; never an error. See ``docs/int8.md``.
    backend : str
        "auto", "native", "numba", "numpy", "cuda", "cupy" or "torch". "auto" (unless
        ``$MMREC_FAST_BACKEND`` names one) keeps GPU-resident inputs on the GPU (cuda > cupy/torch),
        sends large host problems to the GPU when one is present, and otherwise uses the best CPU
        engine (native > numba > numpy).
    user_block, item_block : int, optional
        Tile sizes of the blocked kernel (``None``: cache-sized backend defaults).
    num_threads : int, optional
        Threads to use (``None``: all).
    progress : bool
        Show a progress bar over user chunks.

    Returns
    -------
    TopK
        ``indices`` (U, k) int64, ``scores`` (U, k) float32, ``log_normalizer`` (U,) float64 and
        ``probs`` (U, k) float32. Rows are sorted by descending score, ties to the lower item index.
        NumPy arrays from the CPU backends; on "cuda", "cupy" and "torch" the family of ``users``
        (torch tensors on the users' device, CuPy arrays, or NumPy for NumPy input).

    Raises
    ------
    ValueError
        NaN/inf values, wrong ranks or mismatched d, k < 1, temperature <= 0, exclusion, filter or
        candidate ids out of range (or of the wrong dtype), a mask of the wrong length, candidates with
        the wrong number of rows, scores that could overflow float32, an unknown or unavailable backend,
        an unknown ``precision`` or "int8" off the native backend or with users on a GPU.

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> rng = np.random.default_rng(0)
    >>> users, items = rng.normal(size=(2, 8)), rng.normal(size=(500, 8))
    >>> result = mf.topk(users, items, k=3)
    >>> result.indices.shape, result.probs.dtype
    ((2, 3), dtype('float32'))
    >>> bool(np.all(np.diff(result.scores, axis=1) <= 0))
    True
    >>> only = mf.topk(users, items, k=3, allow=[4, 8, 15, 16, 23, 42], ban=[42])
    >>> bool(np.isin(only.indices, [4, 8, 15, 16, 23]).all())
    True
    """
    if isinstance(items, ItemIndex):
        # The index's own query: its external ids, live segments and default precision apply.
        return items.topk(
            users,
            k,
            exclude=exclude,
            allow=allow,
            ban=ban,
            candidates=candidates,
            temperature=temperature,
            normalizer=normalizer,
            precision=precision,
            backend=backend,
            user_block=user_block,
            item_block=item_block,
            num_threads=num_threads,
            progress=progress,
        )
    k = validation.check_k(k)
    temperature = validation.check_temperature(temperature)
    precision = check_precision("fp32" if precision is None else precision)
    index = _index_for(items, backend, item_block, users)
    return search(
        index,
        users,
        k,
        exclude,
        temperature,
        user_block,
        num_threads,
        progress,
        allow=allow,
        ban=ban,
        candidates=candidates,
        normalizer=normalizer,
        precision=precision,
    )


def score(users, items, *, max_elements: int = DEFAULT_MAX_DENSE_ELEMENTS) -> np.ndarray:
    """Dense float32 score matrix ``users @ items.T`` for problems small enough to hold in memory.

    Parameters
    ----------
    users : array-like, shape (U, d)
    items : array-like of shape (I, d), or ItemIndex
    max_elements : int
        Refuse (``ValueError``) when U x I exceeds this; use :func:`topk` for large problems.

    Returns
    -------
    ndarray of float32, shape (U, I)

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> mf.score(np.eye(2), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    array([[1., 3., 5.],
           [2., 4., 6.]], dtype=float32)
    """
    items = _arrays.asnumpy(items.items) if isinstance(items, ItemIndex) else validation.as_float_matrix(items, "items")
    users = validation.as_float_matrix(users, "users", dim=items.shape[1], dim_from="items")
    validation.check_score_range(users, items, 1.0)
    n = users.shape[0] * items.shape[0]
    if n > max_elements:
        raise ValueError(
            f"max_elements: a dense {users.shape[0]} x {items.shape[0]} score matrix has {n:,} "
            f"elements (> {max_elements:,}); use mmrec_fast.topk, which never materialises it, "
            "or raise max_elements"
        )
    return users @ items.T


def score_pairs(
    users,
    items,
    user_ids,
    item_ids,
    *,
    exclude=None,
    allow=None,
    ban=None,
    candidates=None,
    temperature=1.0,
    backend="auto",
) -> PairScores:
    """Scores and catalogue-softmax probabilities of given (user, item) pairs, e.g. held-out positives.

    The probability of pair (i, j) is ``exp(s_ij / T - logsumexp_j'(s_ij' / T))`` over user i's eligible
    catalogue (allowed ∩ candidates - banned - exclude), exactly the ``probs`` :func:`topk` would report
    for j with the same filters.

    Parameters
    ----------
    users : array-like, shape (U, d)
    items : array-like of shape (I, d), or ItemIndex
    user_ids, item_ids : array-like of int, shape (n,)
        The pairs, as row numbers of ``users`` and ``items``.
    exclude, allow, ban, candidates, temperature, backend
        As in :func:`topk`. A pair outside its user's eligible set gets probability 0 (log-probability
        -inf).

    Returns
    -------
    PairScores
        ``scores`` (n,) float32, ``log_probs`` and ``probs`` (n,) float64.

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> rng = np.random.default_rng(0)
    >>> users, items = rng.normal(size=(3, 4)), rng.normal(size=(50, 4))
    >>> pairs = mf.score_pairs(users, items, [0, 2], [7, 7])
    >>> bool(np.all((pairs.probs > 0) & (pairs.probs < 1)))
    True
    """
    temperature = validation.check_temperature(temperature)
    index = _index_for(items, backend, None)
    users = validation.as_float_matrix(users, "users", dim=index.dim, dim_from="items")
    user_ids = validation.as_index_array(user_ids, "user_ids", users.shape[0], upper_name=f"U = {users.shape[0]} users")
    item_ids = validation.as_index_array(item_ids, "item_ids", index.n_items, upper_name=f"I = {index.n_items} items")
    if user_ids.shape != item_ids.shape:
        raise ValueError(f"user_ids, item_ids: lengths differ ({user_ids.shape[0]} vs {item_ids.shape[0]})")
    excl_indptr, excl_indices = validation.as_exclusion(exclude, users.shape[0], index.n_items)
    mask, _ = validation.item_mask(allow, ban, index.n_items)
    cand = None
    if candidates is not None:
        cand = validation.as_exclusion(candidates, users.shape[0], index.n_items, name="candidates")
    validation.check_score_range(users, index.items, temperature, items_max_abs=index.max_abs)

    items_host = _arrays.asnumpy(index.items)  # a GPU backend's index keeps device items
    scores = np.einsum("ij,ij->i", users[user_ids], items_host[item_ids]).astype(np.float32)
    # One normaliser per distinct user: a k=1 pass of the engine over that user's eligible catalogue.
    unique_users, inverse = np.unique(user_ids, return_inverse=True)
    sub = validation.exclusion_rows(excl_indptr, excl_indices, unique_users)
    sub_cand = None if cand is None else validation.exclusion_rows(cand[0], cand[1], unique_users)
    allowed = None if mask is None else mask.view(bool)
    part = topk(users[unique_users], index, 1, exclude=sub, allow=allowed, candidates=sub_cand, temperature=temperature)
    lse = _arrays.asnumpy(part.log_normalizer)[inverse]
    excluded = _pairs_excluded(excl_indptr, excl_indices, user_ids, item_ids)
    if mask is not None:
        excluded |= mask[item_ids] == 0
    if cand is not None:
        excluded |= ~_pairs_excluded(cand[0], cand[1], user_ids, item_ids)
    with np.errstate(invalid="ignore"):
        log_probs = np.where(excluded, -np.inf, scores.astype(np.float64) / temperature - lse)
    return PairScores(scores, log_probs, np.exp(log_probs))


def _pairs_excluded(indptr, indices, user_ids, item_ids) -> np.ndarray:
    """Whether each (user, item) pair is in the (row-sorted) exclusion CSR: one binary search per pair."""
    if indices.size == 0:
        return np.zeros(user_ids.shape, dtype=bool)
    # Rows are sorted, so (row, item) pairs are globally sorted by row * I' + item with I' > max item.
    width = int(max(indices.max(), item_ids.max(initial=0))) + 1
    rows = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.int64), np.diff(indptr))
    flat = rows * width + indices
    query = user_ids * width + item_ids
    pos = np.searchsorted(flat, query)
    return (pos < flat.shape[0]) & (flat[np.minimum(pos, flat.shape[0] - 1)] == query)
