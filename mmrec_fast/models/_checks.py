"""Argument checks shared by the models (clear errors naming the argument)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .base import ScoreBlock


def check_interactions(matrix, name: str, n_users: int, n_items: int) -> sp.csr_matrix:
    """A users x items sparse matrix of the model's shape, as CSR with sorted indices."""
    if not sp.issparse(matrix):
        raise ValueError(f"{name} must be a scipy sparse users x items matrix, got {type(matrix).__name__}")
    if matrix.shape != (n_users, n_items):
        raise ValueError(f"{name} has shape {matrix.shape}, the model has {n_users} users x {n_items} items")
    csr = sp.csr_matrix(matrix)
    csr.sum_duplicates()
    csr.sort_indices()
    if csr.nnz and not np.isfinite(csr.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return csr


def check_features(features, n_items: int, feature_blocks) -> tuple[np.ndarray, list[ScoreBlock]]:
    """Item content matrix (n_items x C, finite float32) and its modality blocks.

    ``feature_blocks`` may be None (one block called ``"content"``), a mapping name -> (start, stop)
    or name -> slice, or a sequence of :class:`ScoreBlock`; blocks must tile the columns without gaps
    or overlap. ``features`` may also be :class:`mmrec_fast.encoders.FusedItems`: its matrix, and its
    modality columns as blocks unless it was PCA-projected (then one ``"content"`` block, since a
    projection mixes the modalities).
    """
    if hasattr(features, "matrix") and hasattr(features, "columns"):
        if feature_blocks is None and getattr(features, "components", None) is None:
            feature_blocks = dict(features.columns)
        features = features.matrix
    arr = np.asarray(features)
    if arr.ndim != 2 or arr.shape[0] != n_items or arr.shape[1] < 1:
        raise ValueError(f"features must have shape (n_items={n_items}, C>=1), got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"features must be floating point, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr).all(axis=1)).sum())
        raise ValueError(
            f"features contain NaN or infinite values in {bad} item row(s); encode missing "
            "modalities as zero rows (see mmrec_fast.encoders.fuse)"
        )
    if feature_blocks is None:
        blocks = [ScoreBlock("content", 0, arr.shape[1])]
    elif isinstance(feature_blocks, dict):
        blocks = [
            ScoreBlock(str(name), int(cols.start), int(cols.stop))
            if isinstance(cols, slice)
            else ScoreBlock(str(name), int(cols[0]), int(cols[1]))
            for name, cols in feature_blocks.items()
        ]
    else:
        blocks = [b if isinstance(b, ScoreBlock) else ScoreBlock(*b) for b in feature_blocks]
    blocks = sorted(blocks, key=lambda b: b.start)
    edge = 0
    names = set()
    for block in blocks:
        if block.start != edge or block.stop <= block.start:
            raise ValueError(f"feature_blocks must tile columns 0..{arr.shape[1]} contiguously, got {blocks}")
        if block.name in ("id", "bias") or block.name in names:
            raise ValueError(f"feature_blocks names must be unique and not 'id'/'bias', got {block.name!r}")
        names.add(block.name)
        edge = block.stop
    if edge != arr.shape[1]:
        raise ValueError(f"feature_blocks cover columns 0..{edge}, features have {arr.shape[1]}")
    return arr, blocks


def history_rows(history, n_items: int) -> sp.spmatrix:
    """New users' histories as a sparse (n, n_items) matrix, for ``fold_in``.

    ``history`` is a scipy sparse matrix with one column per item (returned as is, values kept) or a
    sequence of integer item-id sequences (one row of ones each; a repeated id counts once).
    """
    if sp.issparse(history):
        if history.ndim != 2 or history.shape[1] != n_items:
            raise ValueError(f"history must have {n_items} columns (one per item), got shape {history.shape}")
        return history
    if isinstance(history, (str, bytes)) or not hasattr(history, "__len__"):
        raise TypeError(
            f"history must be a scipy sparse matrix or a sequence of item-id sequences, got {type(history).__name__}"
        )
    rows, cols = [], []
    for r, items in enumerate(history):
        ids = np.asarray(items).ravel()
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"history[{r}] must hold integer item ids, got dtype {ids.dtype}")
        if ids.size and (ids.min() < 0 or ids.max() >= n_items):
            raise ValueError(f"history[{r}] has item ids outside [0, {n_items})")
        rows.append(np.full(ids.size, r))
        cols.append(ids.astype(np.int64))
    rows_a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    cols_a = np.concatenate(cols) if cols else np.zeros(0, np.int64)
    matrix = sp.csr_matrix((np.ones(rows_a.size, np.float32), (rows_a, cols_a)), shape=(len(history), n_items))
    matrix.data[:] = 1.0  # a repeated id is one interaction, not a doubled confidence
    return matrix
