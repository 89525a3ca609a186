"""Exact (score, index) ordering packed into one uint64 key.

Sorting by "score descending, ties to the lower item index" is what every backend promises. Packing an
order-preserving image of the float32 score bits into the high 32 bits and the *complement* of the item
index into the low 32 bits turns that two-level ordering into one integer comparison, so NumPy's
``argpartition``/``argsort`` (which know nothing about ties) select exactly the contract's top-k.
Used by the NumPy float32 backend, the torch backend (:func:`encode_torch`, the signed-int64 form of
the same key), the exact merge of partial results and the tests that emulate the CUDA kernel. The
C++ engine and the CUDA kernel share ``csrc/common/order_key.h``; the Numba kernel keeps its own
inlined copy (the bitwise complement of :func:`encode`), checked against this module by the tests.
"""

from __future__ import annotations

import numpy as np

MAX_INDEX = np.uint64(0xFFFFFFFF)  # item indices must be below 2**32 - 1
_LOW = np.uint64(0xFFFFFFFF)
_SHIFT = np.uint64(32)
_SIGN = np.uint32(0x80000000)
EMPTY_KEY = np.uint64(0)  # below every real key, even that of a -inf score


def encode(scores: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Keys whose unsigned order is the contract's order: larger key = higher score, then lower index.

    A score of -inf (an excluded item) gets :data:`EMPTY_KEY`: it is never a result.
    """
    # + 0.0 turns -0.0 into +0.0: scores compare as real numbers, so the zeros tie (lower id first).
    bits = np.ascontiguousarray(np.asarray(scores, dtype=np.float32) + np.float32(0.0)).view(np.uint32)
    # IEEE-754 floats order like sign-magnitude integers: flip every bit of negatives, set the sign bit
    # of positives, and the unsigned order matches the float order (-inf lowest, +inf highest).
    ordered = np.where(bits & _SIGN, ~bits, bits | _SIGN).astype(np.uint64)
    keys = (ordered << _SHIFT) | (MAX_INDEX - indices.astype(np.uint64))
    keys[np.isneginf(scores)] = EMPTY_KEY
    return keys


def decode(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`encode`: float32 scores and int64 indices (-1 / -inf for :data:`EMPTY_KEY`)."""
    ordered = (keys >> _SHIFT).astype(np.uint32)
    bits = np.where(ordered & _SIGN, ordered & ~_SIGN, ~ordered)
    scores = bits.view(np.float32).copy()
    indices = (MAX_INDEX - (keys & _LOW)).astype(np.int64)
    empty = keys == EMPTY_KEY
    scores[empty] = -np.inf
    indices[empty] = -1
    return scores, indices


def top_keys(keys: np.ndarray, k: int) -> np.ndarray:
    """The k largest keys of every row, sorted best first (rows shorter than k are padded with EMPTY_KEY)."""
    n_rows, width = keys.shape
    if width < k:
        keys = np.concatenate([keys, np.full((n_rows, k - width), EMPTY_KEY, dtype=np.uint64)], axis=1)
        width = k
    if width > k:
        part = np.argpartition(keys, width - k, axis=1)[:, width - k :]
        keys = np.take_along_axis(keys, part, axis=1)
    return np.sort(keys, axis=1)[:, ::-1]


TORCH_EMPTY_KEY = -(2**63)  # below every real signed key: "no item"


def encode_torch(scores, first_index: int):
    """Signed int64 keys of a (rows, n) float32 torch tile whose column c is item ``first_index + c``.

    The same order as :func:`encode`, in torch's signed int64 (torch sorts no uint64): signed key order
    == (score descending, index ascending); -inf scores (excluded or padding) get
    :data:`TORCH_EMPTY_KEY`; -0.0 is folded into +0.0 so that equal scores tie on the index.
    """
    import torch  # only reached with torch tensors in hand

    bits = (scores + 0.0).view(torch.int32).to(torch.int64)
    # Negative floats: flip the 31 magnitude bits so larger magnitude = smaller integer.
    ordered = torch.where(bits >= 0, bits, bits ^ 0x7FFFFFFF)
    index = torch.arange(first_index, first_index + scores.shape[1], device=scores.device, dtype=torch.int64)
    keys = (ordered << 32) | (int(_LOW) - index)
    return keys.masked_fill_(torch.isneginf(scores), TORCH_EMPTY_KEY)


def decode_torch(keys):
    """Inverse of :func:`encode_torch`: float32 scores and int64 indices (-inf / -1 for empty keys)."""
    import torch

    ordered = keys >> 32  # arithmetic shift keeps the sign
    bits = torch.where(ordered >= 0, ordered, ordered ^ 0x7FFFFFFF).to(torch.int32)
    scores = bits.view(torch.float32).clone()
    indices = int(_LOW) - (keys & int(_LOW))
    empty = keys == TORCH_EMPTY_KEY
    scores.masked_fill_(empty, float("-inf"))
    indices.masked_fill_(empty, -1)
    return scores, indices
