"""Fuse per-modality embedding blocks into the item matrix the engine scores.

``fuse`` L2-normalises each modality's rows, multiplies block ``m`` by its weight ``w_m`` and
concatenates the blocks. For a user vector ``u`` in the same layout the score therefore splits
exactly into per-modality parts::

    u . v = sum_m  u[cols_m] . v[cols_m]        (FusedItems.contributions)

which is what explanations ("recommended for its description, not its cover") are built from.
An optional PCA projection to ``target_dim`` keeps that split exact: with projection ``P`` and mean
``mu``, ``u' . v' = sum_m u' . ((v_m - mu_m) P_m)``.

Missing modalities (contract)
-----------------------------
A row is *missing* for a modality when the block's ``present`` mask says so, or when the row is
all zeros (the ``on_error="zero"`` output) or contains NaN. ``inf`` is an error. What a missing row
becomes is the ``missing`` policy, never a silent NaN:

``"zero"`` (default)
    the block stays zero for that item: it adds 0 to every score, so the item is ranked on its
    other modalities (an item with no modality at all scores 0 everywhere);
``"mean"``
    the block is the (normalised, weighted) mean of the items that have the modality -- "a typical
    item" -- so missing content neither helps nor hurts relative to an average item;
``"raise"``
    ``ValueError`` naming the modality and the first missing row.

``FusedItems.missing`` counts the missing rows per modality and ``FusedItems.present`` keeps the masks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

__all__ = ["ModalityBlock", "FusedItems", "fuse", "MISSING_POLICIES"]

MISSING_POLICIES = ("zero", "mean", "raise")


@dataclass
class ModalityBlock:
    """One modality's embeddings for a whole catalogue, with what is present.

    Attributes
    ----------
    embeddings : np.ndarray
        float32 ``(I, d_m)``; rows of absent items are zero.
    present : np.ndarray
        bool ``(I,)``: True where the item has this modality and it was encoded.
    texts : list, optional
        The intermediate text per item in the "to text" route (labels, caption or transcript).
    errors : list
        :class:`~mmrec_fast.encoders.ItemError` for items whose content failed to encode.
    """

    embeddings: np.ndarray
    present: np.ndarray
    texts: list | None = None
    errors: list = field(default_factory=list)


@dataclass
class FusedItems:
    """The fused item matrix and what is needed to explain and extend it.

    Attributes
    ----------
    matrix : np.ndarray
        float32 ``(I, d)``: the engine's item matrix.
    columns : dict
        Modality -> ``slice`` of the concatenated (pre-projection) columns.
    weights : dict
        Modality -> weight.
    present : dict
        Modality -> bool ``(I,)`` mask of items that had it.
    missing : dict
        Modality -> number of missing rows.
    missing_policy : str
        How missing rows were filled.
    components : np.ndarray or None
        PCA projection ``(D, d)`` when ``target_dim`` was given.
    mean : np.ndarray or None
        PCA centre ``(D,)``.
    concat : np.ndarray or None
        The unprojected ``(I, D)`` matrix, kept when projecting (needed by ``contributions``).
    fill : dict
        Modality -> row used for missing items under ``"mean"`` (for ``transform``).
    """

    matrix: np.ndarray
    columns: dict
    weights: dict
    present: dict
    missing: dict
    missing_policy: str
    components: np.ndarray | None = None
    mean: np.ndarray | None = None
    concat: np.ndarray | None = None
    fill: dict = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """Width of the fused matrix."""
        return int(self.matrix.shape[1])

    def contributions(self, user: np.ndarray, items=None) -> dict:
        """Per-modality parts of the scores of one user vector; they sum to ``matrix @ user``.

        Parameters
        ----------
        user : np.ndarray
            ``(d,)`` vector in the fused space (after projection, if any).
        items : array-like of int, optional
            Item rows to explain (default: all).

        Returns
        -------
        dict
            Modality -> float32 scores; under PCA with centring also ``"_centre"`` (the constant
            ``-mu P . u`` term), so the parts add up to the score exactly.
        """
        user = np.asarray(user, dtype=np.float64).reshape(-1)
        if user.shape[0] != self.dim:
            raise ValueError(f"user: has {user.shape[0]} dimensions, the fused matrix has {self.dim}")
        rows = slice(None) if items is None else np.asarray(items, dtype=np.int64)
        out = {}
        if self.components is None:
            for name, cols in self.columns.items():
                out[name] = (self.matrix[rows, cols].astype(np.float64) @ user[cols]).astype(np.float32)
            return out
        back = self.components @ user  # (D,): the user seen in the concatenated space
        for name, cols in self.columns.items():
            out[name] = (self.concat[rows, cols].astype(np.float64) @ back[cols]).astype(np.float32)
        if self.mean is not None:
            n = len(next(iter(out.values())))
            out["_centre"] = np.full(n, -float(self.mean @ back), dtype=np.float32)
        return out

    def transform(self, blocks: Mapping[str, object]) -> np.ndarray:
        """Fuse new items with this fusion's weights, fill rows and projection (catalogue updates)."""
        concat, present = _concat(blocks, self.columns, self.weights)
        for name, cols in self.columns.items():
            miss = ~present[name]
            if miss.any():
                if self.missing_policy == "raise":
                    raise ValueError(
                        f"blocks[{name!r}]: row {int(np.flatnonzero(miss)[0])} is missing (missing='raise')"
                    )
                if self.missing_policy == "mean":
                    concat[np.ix_(miss, np.arange(cols.start, cols.stop))] = self.fill[name]
        if self.components is None:
            return concat
        centred = concat - self.mean if self.mean is not None else concat
        return (centred @ self.components).astype(np.float32)


def _block_parts(name: str, block) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings float32 with missing rows zeroed, present mask) of one block."""
    if isinstance(block, ModalityBlock):
        emb, present = block.embeddings, np.asarray(block.present, dtype=bool)
    elif isinstance(block, tuple) and len(block) == 2:
        emb, present = block[0], np.asarray(block[1], dtype=bool)
    else:
        emb, present = block, None
    emb = np.array(emb, dtype=np.float32, copy=True)
    if emb.ndim != 2 or emb.shape[1] < 1:
        raise ValueError(f"blocks[{name!r}]: expected a 2-D (items x dims) array, got shape {emb.shape}")
    if np.isinf(emb).any():
        r = int(np.argwhere(np.isinf(emb))[0][0])
        raise ValueError(f"blocks[{name!r}]: contains inf (first at row {r}); NaN rows count as missing, inf does not")
    nan_rows = np.isnan(emb).any(axis=1)
    norms = np.sqrt(np.einsum("ij,ij->i", np.nan_to_num(emb), np.nan_to_num(emb)))
    derived = ~nan_rows & (norms > 0)
    if present is None:
        present = derived
    else:
        if present.shape != (emb.shape[0],):
            raise ValueError(f"blocks[{name!r}]: present mask has shape {present.shape}, expected ({emb.shape[0]},)")
        present = present & derived
    emb[~present] = 0.0
    emb[present] /= norms[present, None]
    return emb, present


def _concat(blocks: Mapping[str, object], columns: dict | None, weights: Mapping[str, float]):
    if not isinstance(blocks, Mapping) or not blocks:
        raise ValueError("blocks: expected a non-empty mapping modality -> (items x dims) array")
    names = list(blocks) if columns is None else list(columns)
    if columns is not None and set(blocks) != set(columns):
        raise ValueError(f"blocks: expected modalities {sorted(columns)}, got {sorted(blocks)}")
    parts, present, n_items = {}, {}, None
    for name in names:
        emb, mask = _block_parts(name, blocks[name])
        if n_items is None:
            n_items = emb.shape[0]
        elif emb.shape[0] != n_items:
            raise ValueError(f"blocks[{name!r}]: has {emb.shape[0]} rows, {names[0]!r} has {n_items}")
        if columns is not None and emb.shape[1] != columns[name].stop - columns[name].start:
            raise ValueError(
                f"blocks[{name!r}]: has {emb.shape[1]} dimensions, the fusion was fitted with "
                f"{columns[name].stop - columns[name].start}"
            )
        parts[name], present[name] = emb * np.float32(weights[name]), mask
    return np.concatenate([parts[n] for n in names], axis=1), present


def fuse(
    blocks: Mapping[str, object],
    weights: Mapping[str, float] | None = None,
    *,
    missing: str = "zero",
    target_dim: int | None = None,
    center: bool = True,
) -> FusedItems:
    """Build the item matrix from per-modality blocks.

    Parameters
    ----------
    blocks : mapping
        Modality name -> ``(I, d_m)`` array, ``(array, present_mask)`` tuple or
        :class:`ModalityBlock`. Every block has the same ``I`` (one row per catalogue item).
    weights : mapping, optional
        Modality -> weight >= 0 (default 1 each). Block ``m`` is scaled by ``w_m`` after L2
        normalisation, so its share of every score is proportional to ``w_m``.
    missing : {"zero", "mean", "raise"}
        What a missing row becomes (see the module docstring).
    target_dim : int, optional
        Project the concatenation to this many dimensions with PCA (fitted on these items).
    center : bool
        Centre before PCA (the centre term is reported by ``contributions``).

    Returns
    -------
    FusedItems
    """
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing: must be one of {MISSING_POLICIES}, got {missing!r}")
    if not isinstance(blocks, Mapping) or not blocks:
        raise ValueError("blocks: expected a non-empty mapping modality -> (items x dims) array")
    weights = {name: 1.0 for name in blocks} if weights is None else dict(weights)
    unknown = set(weights) - set(blocks)
    if unknown or set(blocks) - set(weights):
        raise ValueError(f"weights: modalities {sorted(weights)} do not match blocks {sorted(blocks)}")
    for name, w in weights.items():
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"weights[{name!r}]: must be finite and >= 0, got {w!r}")
    concat, present = _concat(blocks, None, weights)
    columns, start = {}, 0
    for name in blocks:
        emb = (
            blocks[name].embeddings
            if isinstance(blocks[name], ModalityBlock)
            else blocks[name][0]
            if isinstance(blocks[name], tuple)
            else blocks[name]
        )
        width = np.shape(emb)[1]
        columns[name] = slice(start, start + width)
        start += width
    missing_counts = {name: int((~mask).sum()) for name, mask in present.items()}
    fill = {}
    for name, cols in columns.items():
        miss = ~present[name]
        if not miss.any():
            continue
        if missing == "raise":
            raise ValueError(
                f"blocks[{name!r}]: row {int(np.flatnonzero(miss)[0])} is missing "
                f"({missing_counts[name]} rows in all; missing='raise')"
            )
        if missing == "mean":
            if not present[name].any():
                raise ValueError(f"blocks[{name!r}]: no item has this modality, so missing='mean' has no mean")
            mean_row = concat[present[name], cols].mean(axis=0)
            # Keep the block's norm at w_m, like a present row.
            norm = np.linalg.norm(mean_row)
            fill[name] = (mean_row / norm * weights[name]) if norm > 0 else mean_row
            concat[np.ix_(miss, np.arange(cols.start, cols.stop))] = fill[name]

    if target_dim is None:
        return FusedItems(concat, columns, weights, present, missing_counts, missing, fill=fill)
    total = concat.shape[1]
    if isinstance(target_dim, bool) or not isinstance(target_dim, (int, np.integer)) or not 1 <= target_dim < total:
        raise ValueError(
            f"target_dim: must be an integer in [1, {total - 1}] (the concatenation has {total} "
            f"dimensions), got {target_dim!r}"
        )
    if target_dim > concat.shape[0]:
        raise ValueError(
            f"target_dim: {target_dim} exceeds the number of items ({concat.shape[0]}); PCA "
            f"cannot find more directions than items"
        )
    x = concat.astype(np.float64)
    mu = x.mean(axis=0) if center else None
    xc = x - mu if center else x
    # Eigen-decomposition of the D x D scatter matrix: memory O(D^2), independent of I.
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    comps = evecs[:, ::-1][:, :target_dim]
    # Deterministic signs: the largest-magnitude loading of each component is positive.
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), np.arange(target_dim)])
    comps = comps * np.where(signs == 0, 1.0, signs)
    matrix = (xc @ comps).astype(np.float32)
    return FusedItems(matrix, columns, weights, present, missing_counts, missing, comps, mu, concat, fill)
