"""Hogwild SGD for BPR matrix factorisation, compiled with Numba (the CPU trainer of :class:`BPRMF`).

One epoch draws ``n_samples`` triples ``(u, i, j)``: a positive ``(u, i)`` uniformly among the stored
entries of the training matrix (so active users are drawn as often as they have positives, as in
implicit and Cornac), and a negative ``j`` uniformly over the catalogue, redrawn while it is one of
``u``'s positives (a binary search in ``u``'s sorted CSR row) up to ``max_tries`` times; a triple whose
every draw hit a positive is skipped and counted. Random bits: each triple takes one 64-bit draw of
the chunk's main stream (high half: the entry, low half: the first negative); redraws of a negative
come from a second, "retry" stream, so triple ``t`` is fixed by the ``t``-th main draw and the retries
before it -- which lets the kernel draw triples ahead of the update they feed. Each triple takes one
plain SGD step on

    ln sigmoid(x_uij) - reg * (|p_u|^2 + |q_i|^2 + |q_j|^2 + b_i^2 + b_j^2) / 2,
    x_uij = p_u . (q_i - q_j) + b_i - b_j,

the update of Rendle et al. (2009) as implicit and Cornac implement it.

Threads: the samples are cut into ``len(seeds)`` chunks run in parallel (``prange``), each with its own
random stream (splitmix64 seeded by the caller), all updating the shared tables without locks
(Hogwild, Niu et al. 2011: collisions are rare on sparse data and only add noise). With one chunk the
epoch is a fixed sequence of updates: the result is bit-for-bit deterministic for given seeds. With
several chunks the interleaving of the threads' writes varies from run to run, so results differ in
the last bits (and, through the trajectory, more) -- the usual Hogwild trade.

Memory: on a large catalogue each step touches rows that miss every cache (the entry, the user's CSR
row, three factor rows), and a step's arithmetic is short. The kernel therefore runs a three-stage
software pipeline over the triples: draw the entry ``2 * LOOKAHEAD`` steps ahead (prefetch its user
and item id), resolve user and positive ``LOOKAHEAD`` steps ahead (prefetch the user's CSR bounds and
the three factor rows), read the CSR bounds ``LOOKAHEAD / 2`` ahead (prefetch the first probes of the
binary search), and only then check the negative and step. The triples and their order do not depend
on the pipeline (:func:`sample_triples` draws the same sequence without it).

Compilation is lazy (first call) and cached on disk (``cache=True``): importing this module costs nothing.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

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
_RETRY_SALT = np.uint64(0xD1B54A32D192ED03)

#: Distance (in triples) between the pipeline's stages (module docstring). On a large catalogue each
#: step touches rows that miss every cache and a step's arithmetic is short: without lookahead the loop
#: waits on memory (measured at 100k x 100k x 2M, one thread: 0.9-1.0x implicit's samples/s without,
#: 2.3-2.5x with it).
LOOKAHEAD = 8
_FLOATS_PER_LINE = 16  # 64-byte cache lines of float32


@intrinsic
def _prefetch(typingctx, array, offset):
    """``llvm.prefetch`` (read, keep in all cache levels) of element ``offset`` of a C-contiguous array."""
    if not isinstance(array, types.Array) or not isinstance(offset, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        arr = context.make_array(signature.args[0])(context, builder, args[0])
        item = context.get_constant(types.intp, context.get_abi_sizeof(context.get_data_type(array.dtype)))
        byte = builder.mul(context.cast(builder, args[1], signature.args[1], types.intp), item)
        ptr = cgutils.pointer_add(builder, arr.data, byte, return_type=ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = builder.module.declare_intrinsic(
            "llvm.prefetch", [ptr.type], ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        )
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(array, offset), codegen


@njit(cache=True, inline="always")
def _prefetch_row(table, row):
    """Prefetch every cache line of ``table[row]`` (a C-contiguous float32 matrix)."""
    dim = table.shape[1]
    start = row * dim
    for offset in range(0, dim, _FLOATS_PER_LINE):
        _prefetch(table, start + offset)
    _prefetch(table, start + dim - 1)  # a row that straddles one more line than dim / 16


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
def _negative(first_bits, retry, indices, row_start, row_stop, n_items, max_tries):
    """(new retry state, negative or -1): ``first_bits`` gives the first candidate, the retry stream the rest."""
    low = first_bits
    for attempt in range(max_tries):
        if attempt > 0:
            retry, more = _next(retry)
            low = more & _LOW32
        candidate = _below(low, n_items)
        if not _in_row(indices, row_start, row_stop, candidate):
            return retry, candidate
    return retry, np.int64(-1)


@njit(cache=True, inline="always")
def _retry_seed(seed):
    """The retry stream's start, derived from the chunk seed (a different point of splitmix64's cycle)."""
    _, bits = _next(seed ^ _RETRY_SALT)
    return bits


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
    retry = _retry_seed(state)
    nnz = indices.shape[0]
    for t in range(n_samples):
        state, bits = _next(state)
        entry = _below(bits >> _S32, nnz)
        user = np.int64(user_of[entry])
        users[t] = user
        positives[t] = indices[entry]
        retry, negatives[t] = _negative(
            bits & _LOW32, retry, indices, indptr[user], indptr[user + 1], n_items, max_tries
        )
    return users, positives, negatives


@njit(parallel=True, fastmath=_FASTMATH, cache=True)
def bpr_epoch(user_factors, item_factors, item_bias, indptr, indices, user_of, n_samples, lr, reg, seeds, max_tries):
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
    nnz = indices.shape[0]
    ring = 4 * LOOKAHEAD  # slots for the triples in flight (drawn 2 * LOOKAHEAD ahead, plus margin)
    for chunk in prange(n_chunks):
        state = seeds[chunk]
        retry = _retry_seed(state)
        count = base + (1 if chunk < extra else 0)
        chunk_loss = 0.0
        chunk_steps = 0
        chunk_skipped = 0
        r_entry = np.empty(ring, dtype=np.int64)
        r_first = np.empty(ring, dtype=np.uint64)
        r_user = np.empty(ring, dtype=np.int64)
        r_pos = np.empty(ring, dtype=np.int64)
        r_start = np.empty(ring, dtype=np.int64)
        r_stop = np.empty(ring, dtype=np.int64)
        # Stage 1 for s < 2L, stage 2 for s < L, stage 3 for s < L/2 (then each loop turn advances all).
        for s in range(min(2 * LOOKAHEAD, count)):
            state, bits = _next(state)
            r_entry[s % ring] = _below(bits >> _S32, nnz)
            r_first[s % ring] = bits & _LOW32
        for s in range(min(LOOKAHEAD, count)):
            r_user[s % ring] = user_of[r_entry[s % ring]]
            r_pos[s % ring] = indices[r_entry[s % ring]]
        for s in range(min(LOOKAHEAD // 2, count)):
            r_start[s % ring] = indptr[r_user[s % ring]]
            r_stop[s % ring] = indptr[r_user[s % ring] + 1]
        for t in range(count):
            ahead = t + 2 * LOOKAHEAD
            if ahead < count:  # stage 1: the entry and first negative candidate
                state, bits = _next(state)
                entry = _below(bits >> _S32, nnz)
                r_entry[ahead % ring] = entry
                r_first[ahead % ring] = bits & _LOW32
                _prefetch(user_of, entry)
                _prefetch(indices, entry)
            ahead = t + LOOKAHEAD
            if ahead < count:  # stage 2: user and positive; their rows and the first candidate's
                slot = ahead % ring
                user = np.int64(user_of[r_entry[slot]])
                pos = np.int64(indices[r_entry[slot]])
                r_user[slot] = user
                r_pos[slot] = pos
                _prefetch(indptr, user)
                _prefetch_row(user_factors, user)
                _prefetch_row(item_factors, pos)
                _prefetch(item_bias, pos)
                first = _below(r_first[slot], n_items)
                _prefetch_row(item_factors, first)
                _prefetch(item_bias, first)
            ahead = t + LOOKAHEAD // 2
            if ahead < count:  # stage 3: the user's CSR bounds; the binary search's first probes
                slot = ahead % ring
                lo = indptr[r_user[slot]]
                hi = indptr[r_user[slot] + 1]
                r_start[slot] = lo
                r_stop[slot] = hi
                if hi > lo:
                    _prefetch(indices, (lo + hi) >> 1)
                    _prefetch(indices, (3 * lo + hi) >> 2)
                    _prefetch(indices, (lo + 3 * hi) >> 2)
            slot = t % ring
            user = r_user[slot]
            pos = r_pos[slot]
            retry, neg = _negative(r_first[slot], retry, indices, r_start[slot], r_stop[slot], n_items, max_tries)
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
