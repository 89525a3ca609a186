"""The top-k pass over a prepared :class:`~mmrec_fast.ItemIndex`: users streamed through the backend in
chunks (progress bar, Ctrl-C between chunks), results padded and wrapped.

Shared by :func:`mmrec_fast.topk` (which builds a one-off index) and :meth:`ItemIndex.topk`, so neither
module imports the other. Arguments arrive with ``k`` and ``temperature`` already checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import numpy as np
from tqdm.auto import tqdm

from . import _arrays, validation
from .backends import BlockConfig
from .backends.base import ArrayBackend
from .result import TopK

if TYPE_CHECKING:
    from .index import ItemIndex

# Users per backend call: ~4e9 multiply-adds, so a call lasts about a second or two on a laptop
# (responsive progress bar and Ctrl-C) while being long enough to amortise per-call overhead.
_CHUNK_MACS = 4_000_000_000
_MIN_CHUNK_USERS = 1024


def search(index: ItemIndex, users, k: int, exclude, temperature: float, user_block, num_threads, progress) -> TopK:
    """Each user's top-k and normaliser against ``index`` (see :func:`mmrec_fast.topk`)."""
    if getattr(index.backend, "array_api", False):
        return _topk_arrays(users, index, k, exclude, temperature, user_block, num_threads, progress)
    users = validation.as_float_matrix(users, "users", dim=index.dim, dim_from="items")
    n_users, n_items = users.shape[0], index.n_items
    validation.check_k(k, n_users)
    excl_indptr, excl_indices = validation.as_exclusion(exclude, n_users, n_items)
    validation.check_score_range(users, index.items, temperature, items_max_abs=index.max_abs)
    config = BlockConfig(user_block=user_block, item_block=index.item_block, num_threads=num_threads)

    indices = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    # Kernels never need more than I slots; the rest is padding already in place.
    k_eff = min(k, n_items)
    if n_users and k_eff:
        chunk = max(_MIN_CHUNK_USERS, _CHUNK_MACS // max(1, n_items * index.dim))
        starts = range(0, n_users, chunk)
        bar = tqdm(total=n_users, unit="user", desc="topk", disable=not progress)
        with bar:
            for u0 in starts:
                u1 = min(u0 + chunk, n_users)
                sub_indptr, sub_indices = validation.exclusion_range(excl_indptr, excl_indices, u0, u1)
                if k_eff == k:  # row slices of C-ordered outputs are contiguous: write in place
                    out_idx, out_scores = indices[u0:u1], scores[u0:u1]
                else:
                    out_idx = np.empty((u1 - u0, k_eff), dtype=np.int64)
                    out_scores = np.empty((u1 - u0, k_eff), dtype=np.float32)
                index.backend.topk_into(
                    users[u0:u1],
                    index.prepared,
                    k_eff,
                    1.0 / temperature,
                    sub_indptr,
                    sub_indices,
                    config,
                    out_idx,
                    out_scores,
                    lse[u0:u1],
                )
                if k_eff != k:
                    indices[u0:u1, :k_eff] = out_idx
                    scores[u0:u1, :k_eff] = out_scores
                bar.update(u1 - u0)
    return TopK(indices, scores, lse, temperature)


def _topk_arrays(
    users, index: ItemIndex, k: int, exclude, temperature: float, user_block, num_threads, progress
) -> TopK:
    """:func:`topk` on a GPU-capable backend (cuda, cupy, torch): the data stays in its array family.

    Validation happens where the arrays live (no host copy of device inputs); the exclusion CSR is
    validated on the host (it is small beside the embeddings) and moved by the backend. Results are
    returned in the family of ``users`` -- torch tensors for torch input (on its device), CuPy arrays for
    CuPy input, NumPy otherwise.
    """
    out_family = _arrays.family(users)
    backend = cast(ArrayBackend, index.backend)
    users = validation.as_float_matrix_any(
        users, "users", dim=index.dim, dim_from="items", keep_half=getattr(backend, "half_inputs", False)
    )
    n_users, n_items = int(users.shape[0]), index.n_items
    validation.check_k(k, n_users)
    excl_indptr, excl_indices = validation.as_exclusion(exclude, n_users, n_items)
    validation.check_score_range(users, index.items, temperature, items_max_abs=index.max_abs)
    config = BlockConfig(user_block=user_block, item_block=index.item_block, num_threads=num_threads)
    users = backend.adopt_users(users, index.prepared)
    fam = _arrays.family(users)
    indices = _arrays.full(fam, (n_users, k), -1, "int64", like=users)
    scores = _arrays.full(fam, (n_users, k), float("-inf"), "float32", like=users)
    lse = _arrays.full(fam, (n_users,), float("-inf"), "float64", like=users)
    k_eff = min(k, n_items)  # kernels never need more than I slots; the padding is already in place
    if n_users and k_eff:
        chunk = backend.chunk_users(n_items, index.dim, index.prepared) or max(
            _MIN_CHUNK_USERS, _CHUNK_MACS // max(1, n_items * index.dim)
        )
        with tqdm(total=n_users, unit="user", desc="topk", disable=not progress) as bar:
            for u0 in range(0, n_users, chunk):
                u1 = min(u0 + chunk, n_users)
                sub_indptr, sub_indices = validation.exclusion_range(excl_indptr, excl_indices, u0, u1)
                idx, sc, ls = backend.topk_arrays(
                    users[u0:u1], index.prepared, k_eff, 1.0 / temperature, sub_indptr, sub_indices, config
                )
                indices[u0:u1, :k_eff] = idx
                scores[u0:u1, :k_eff] = sc
                lse[u0:u1] = ls
                bar.update(u1 - u0)
    indices, scores, lse = (_arrays.to_family(a, out_family) for a in (indices, scores, lse))
    return TopK(indices, scores, lse, temperature)
