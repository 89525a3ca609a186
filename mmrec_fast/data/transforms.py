"""Filters on an interaction log: implicit-feedback thresholds and k-core filtering."""

from __future__ import annotations

import numpy as np

from .idmap import IdMap
from .interactions import Interactions

__all__ = ["binarize", "k_core", "compact"]


def binarize(data: Interactions, threshold: float) -> Interactions:
    """Keep the rows with ``rating >= threshold`` (implicit feedback from explicit ratings).

    The kept rows keep their ratings (``to_csr("ones")`` gives the binary matrix); the maps are
    unchanged. This is Cornac's ``rating_threshold`` rule for positives (ratings >= threshold).
    """
    if data.ratings is None:
        raise ValueError("data: binarize needs ratings, and this log has none")
    try:
        thr = float(threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"threshold: expected a number, got {threshold!r}") from exc
    if not np.isfinite(thr):
        raise ValueError(f"threshold: must be finite, got {threshold!r}")
    return data.subset(data.ratings >= thr)


def compact(data: Interactions) -> Interactions:
    """Re-code users and items to those present in ``data`` (new sorted maps; features re-indexed)."""
    u_present = np.unique(data.users)
    i_present = np.unique(data.items)
    user_map = IdMap(data.user_map.decode(u_present), name=data.user_map.name)
    item_map = IdMap(data.item_map.decode(i_present), name=data.item_map.name)
    # Old codes -> new: the present codes are sorted and the raw ids sorted with them, so the
    # position in u_present is the new code.
    u_new = np.searchsorted(u_present, data.users)
    i_new = np.searchsorted(i_present, data.items)

    def refeat(feats, present):
        if feats is None:
            return None
        out = feats.reindex(present)
        out.index = np.arange(len(present))
        out.index.name = feats.index.name
        return out

    return Interactions(
        users=u_new,
        items=i_new,
        ratings=data.ratings,
        timestamps=data.timestamps,
        user_map=user_map,
        item_map=item_map,
        item_features=refeat(data.item_features, i_present),
        user_features=refeat(data.user_features, u_present),
        source=data.source,
    )


def k_core(data: Interactions, user_k: int = 1, item_k: int = 1, *, compact_ids: bool = True) -> Interactions:
    """Iteratively drop users with < ``user_k`` and items with < ``item_k`` interactions.

    Removing a user lowers its items' counts (and vice versa), so the two filters repeat until
    neither removes anything (a fixed point): then every remaining user has >= ``user_k`` rows and
    every remaining item >= ``item_k`` rows. Counts are of distinct (user, item) pairs, so repeated
    rows do not help an id pass.

    Parameters
    ----------
    data : Interactions
    user_k, item_k : int
        Minimum interactions per user / item (>= 1; 1 keeps every id that has a row).
    compact_ids : bool
        Re-code to the surviving ids (default: the filtered log is a new dataset whose catalogue is
        the surviving items). ``False`` keeps the original maps (filtered ids keep codes, no rows).
    """
    for name, val in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {val!r}")
    keys = data.pair_keys()
    _, first = np.unique(keys, return_index=True)
    distinct = np.zeros(len(data), dtype=bool)
    distinct[first] = True  # one row per pair counts
    keep = np.ones(len(data), dtype=bool)
    while True:
        alive = keep & distinct
        ucount = np.bincount(data.users[alive], minlength=data.n_users)
        icount = np.bincount(data.items[alive], minlength=data.n_items)
        new_keep = keep & (ucount[data.users] >= user_k) & (icount[data.items] >= item_k)
        if new_keep.sum() == keep.sum():
            break
        keep = new_keep
    out = data.subset(keep)
    if len(out) == 0:
        raise ValueError(f"user_k, item_k: the ({user_k}, {item_k})-core of {data!r} is empty")
    return compact(out) if compact_ids else out
