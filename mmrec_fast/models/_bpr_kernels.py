"""Hogwild SGD for BPR matrix factorisation, compiled with Numba (the CPU trainer of :class:`BPRMF`).

One epoch draws ``n_samples`` triples ``(u, i, j)``: a positive ``(u, i)`` uniformly among the stored
entries of the training matrix (so active users are drawn as often as they have positives, as in
implicit and Cornac), and a negative ``j`` uniformly over the catalogue, redrawn while it is one of
``u``'s positives (a binary search in ``u``'s sorted CSR row) up to ``max_tries`` times; a triple whose
every draw hit a positive is skipped and counted. Each triple takes one plain SGD step on

    ln sigmoid(x_uij) - reg * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2) / 2,
    x_uij = p_u . (q_i - q_j) + b_i - b_j,

the update of Rendle et al. (2009) as implicit and Cornac implement it.

Threads: the samples are cut into ``len(seeds)`` chunks run in parallel (``prange``), each with its own
random stream (splitmix64 seeded by the caller), all updating the shared tables without locks
(Hogwild, Niu et al. 2011: collisions are rare on sparse data and only add noise). With one chunk the
epoch is a fixed sequence of updates: the result is bit-for-bit deterministic for given seeds. With
several chunks the interleaving of the threads' writes varies from run to run, so results differ in
the last bits (and, through the trajectory, more) -- the usual Hogwild trade.

Compilation is lazy (first call) and cached on disk (``cache=True``): importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["bpr_epoch", "sample_triples", "epoch_seeds", "splitmix64", "MAX_TRIES"]

#: Redraws of a negative that hit a positive before the triple is skipped.
MAX_TRIES = 16

# fastmath without "nnan"/"ninf": reassociation and contraction let the dot product and the three
# row updates vectorise; infinities must stay meaningful (exp(x) overflows for a huge score gap).
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S32 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(32)
_LOW32 = np.uint64(0xFFFFFFFF)


@njit(cache=True, inline="always")
def _next(state):
    """splitmix64 (Steele et al. 2014): (new state, 64 random bits). Tiny state, passes BigCrush."""
    state = state + _GOLDEN
    z = state
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return state, z ^ (z >> _S31)


@njit(cache=True, inline="always")
def _below(bits32, n):
    """Uniform integer in [0, n) from 32 random bits (Lemire's multiply-shift; n < 2**32)."""
    return np.int64((bits32 * np.uint64(n)) >> _S32)


@njit(cache=True, inline="always")
def _in_row(indices, start, stop, item):
    """Whether ``item`` is in the sorted slice ``indices[start:stop]`` (binary search)."""
    lo, hi = start, stop
    while lo < hi:
        mid = (lo + hi) >> 1
        if indices[mid] < item:
            lo = mid + 1
        else:
            hi = mid
    return lo < stop and indices[lo] == item


@njit(cache=True, inline="always")
def _draw(state, indptr, indices, user_of, n_items, max_tries):
    """One triple: (new state, user, positive, negative); negative is -1 when every draw hit a positive."""
    state, bits = _next(state)
    entry = _below(bits >> _S32, indices.shape[0])
    user = np.int64(user_of[entry])
    pos = np.int64(indices[entry])
    row_start, row_stop = indptr[user], indptr[user + 1]
    low = bits & _LOW32  # the first negative comes from the same draw's other half
    for attempt in range(max_tries):
        if attempt > 0:
            state, more = _next(state)
            low = more & _LOW32
        candidate = _below(low, n_items)
        if not _in_row(indices, row_start, row_stop, candidate):
            return state, user, pos, candidate
    return state, user, pos, np.int64(-1)


@njit(cache=True)
def sample_triples(indptr, indices, user_of, n_items, n_samples, seed, max_tries):
    """The triples one chunk of :func:`bpr_epoch` seeded with ``seed`` visits, in order (for tests and audits).

    Returns
    -------
    users, positives, negatives : int64 (n_samples,)
        ``negatives[t] == -1`` marks a skipped triple (every negative draw was a positive).
    """
    users = np.empty(n_samples, dtype=np.int64)
    positives = np.empty(n_samples, dtype=np.int64)
    negatives = np.empty(n_samples, dtype=np.int64)
    state = np.uint64(seed)
    for t in range(n_samples):
        state, users[t], positives[t], negatives[t] = _draw(state, indptr, indices, user_of, n_items, max_tries)
    return users, positives, negatives


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def bpr_epoch(user_factors, item_factors, item_bias, indptr, indices, user_of, n_samples, lr, reg,
              seeds, max_tries):
    """Run one Hogwild SGD epoch of BPR in place; return per-chunk (loss sums, steps, skipped).

    Parameters
    ----------
    user_factors : float32 (n_users, d)
        ``p_u``, updated in place.
    item_factors : float32 (n_items, d)
        ``q_i``, updated in place.
    item_bias : float32 (n_items,)
        ``b_i``, updated in place.
    indptr, indices : CSR of the training positives (rows sorted, no duplicates; fewer than 2**32 entries
        and items)
    user_of : int32 (nnz,)
        Row of each stored entry (``user_of[k]`` is the user of ``indices[k]``).
    n_samples : int
        Triples to draw in this epoch (split evenly over the chunks, the first chunks taking the extra).
    lr, reg : float
        SGD step and L2 penalty.
    seeds : uint64 (n_chunks,)
        One random stream per chunk; chunks run in parallel.
    max_tries : int
        Negative draws per triple before it is skipped.

    Returns
    -------
    loss : float64 (n_chunks,)
        Sum of ``-ln sigmoid(x_uij)`` before each step (penalty excluded).
    steps, skipped : int64 (n_chunks,)
        Triples that took a step, and triples skipped because every negative draw was a positive.
    """
    n_chunks = seeds.shape[0]
    n_items = item_factors.shape[0]
    dim = item_factors.shape[1]
    lr32 = np.float32(lr)
    reg32 = np.float32(reg)
    one = np.float32(1.0)
    base, extra = n_samples // n_chunks, n_samples % n_chunks
    loss = np.zeros(n_chunks, dtype=np.float64)
    steps = np.zeros(n_chunks, dtype=np.int64)
    skipped = np.zeros(n_chunks, dtype=np.int64)
    for chunk in prange(n_chunks):
        state = seeds[chunk]
        count = base + (1 if chunk < extra else 0)
        chunk_loss = 0.0
        chunk_steps = 0
        chunk_skipped = 0
        for _ in range(count):
            state, user, pos, neg = _draw(state, indptr, indices, user_of, n_items, max_tries)
            if neg < 0:
                chunk_skipped += 1
                continue
            score = item_bias[pos] - item_bias[neg]
            for f in range(dim):
                score += user_factors[user, f] * (item_factors[pos, f] - item_factors[neg, f])
            # z = sigmoid(-x) = d ln sigmoid(x) / dx, and -ln sigmoid(x), both without overflow.
            if score >= 0:
                e = np.exp(-score)
                z = e / (one + e)
                chunk_loss += np.log1p(e)
            else:
                e = np.exp(score)
                z = one / (one + e)
                chunk_loss += np.log1p(e) - score
            for f in range(dim):
                p = user_factors[user, f]
                qi = item_factors[pos, f]
                qj = item_factors[neg, f]
                user_factors[user, f] = p + lr32 * (z * (qi - qj) - reg32 * p)
                item_factors[pos, f] = qi + lr32 * (z * p - reg32 * qi)
                item_factors[neg, f] = qj + lr32 * (-z * p - reg32 * qj)
            bi = item_bias[pos]
            bj = item_bias[neg]
            item_bias[pos] = bi + lr32 * (z - reg32 * bi)
            item_bias[neg] = bj + lr32 * (-z - reg32 * bj)
            chunk_steps += 1
        loss[chunk] = chunk_loss
        steps[chunk] = chunk_steps
        skipped[chunk] = chunk_skipped
    return loss, steps, skipped


def splitmix64(state: int) -> tuple[int, int]:
    """The kernel's generator in plain Python (for references and tests): (new state, 64 bits)."""
    mask = (1 << 64) - 1
    state = (state + 0x9E3779B97F4A7C15) & mask
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return state, z ^ (z >> 31)


def epoch_seeds(seed: int, epoch: int, n_chunks: int) -> np.ndarray:
    """Independent uint64 stream seeds for ``n_chunks`` chunks of one epoch (a pure function of its inputs)."""
    return np.random.SeedSequence([int(seed), int(epoch)]).generate_state(n_chunks, dtype=np.uint64)
