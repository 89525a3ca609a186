"""The interaction log as parallel code arrays, and its CSR views."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .idmap import IdMap

__all__ = ["Interactions"]


def _codes(x, name: str, n: int, n_name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of codes, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: expected integer codes, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(
            f"{name}: codes must lie in 0..{n - 1} ({n_name} has {n} ids), got range {arr.min()}..{arr.max()}"
        )
    return arr


@dataclass(eq=False)
class Interactions:
    """An interaction log: row ``j`` says user ``users[j]`` interacted with item ``items[j]``.

    All arrays are parallel (one entry per row) and hold dense codes from ``user_map`` /
    ``item_map``; the maps cover the whole id space (every split of a dataset shares its maps, so
    codes mean the same thing in train and test).

    Attributes
    ----------
    users, items : ndarray of int64, shape (n,)
        User and item codes.
    ratings : ndarray of float32, shape (n,), or None
        Explicit ratings, if the log has them.
    timestamps : ndarray of int64, shape (n,), or None
        Event times (seconds since the epoch for MovieLens), if the log has them.
    user_map, item_map : IdMap
        Raw id <-> code.
    item_features, user_features : pandas.DataFrame or None
        Side information indexed by item (user) code ``0 .. n_items-1``; rows may be missing for
        ids the side file did not describe. MovieLens items: ``title`` (str), ``year`` (Int64,
        missing allowed), ``genres`` (list of str); users: ``age``, ``gender``, ``occupation``,
        ``zip_code``.
    source : str
        Where the data came from (a path or a dataset name), for messages.
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray | None
    timestamps: np.ndarray | None
    user_map: IdMap
    item_map: IdMap
    item_features: pd.DataFrame | None = None
    user_features: pd.DataFrame | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self):
        if not isinstance(self.user_map, IdMap) or not isinstance(self.item_map, IdMap):
            raise ValueError("user_map, item_map: expected IdMap instances")
        self.users = _codes(self.users, "users", len(self.user_map), "user_map")
        self.items = _codes(self.items, "items", len(self.item_map), "item_map")
        n = len(self.users)
        if len(self.items) != n:
            raise ValueError(f"items: length {len(self.items)} differs from users' {n}")
        if self.ratings is not None:
            r = np.asarray(self.ratings)
            if r.shape != (n,):
                raise ValueError(f"ratings: expected shape ({n},), got {r.shape}")
            if r.size and r.dtype.kind not in "iuf":
                raise ValueError(f"ratings: expected numbers, got dtype {r.dtype}")
            r = r.astype(np.float32, copy=False)
            if r.size and not np.isfinite(r).all():
                raise ValueError(f"ratings: {int((~np.isfinite(r)).sum())} missing or infinite value(s)")
            self.ratings = r
        if self.timestamps is not None:
            t = np.asarray(self.timestamps)
            if t.shape != (n,):
                raise ValueError(f"timestamps: expected shape ({n},), got {t.shape}")
            if t.size and t.dtype.kind not in "iuf":
                raise ValueError(f"timestamps: expected numbers, got dtype {t.dtype}")
            if t.dtype.kind == "f" and t.size and not np.isfinite(t).all():
                raise ValueError(f"timestamps: {int((~np.isfinite(t)).sum())} missing or infinite value(s)")
            self.timestamps = t.astype(np.int64, copy=False)

    # -- sizes ---------------------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        """Size of the user id space (not the number of users with a row here)."""
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        """Size of the item catalogue (not the number of items with a row here)."""
        return len(self.item_map)

    def __len__(self) -> int:
        return len(self.users)

    def __repr__(self) -> str:
        extra = "".join(
            [", ratings" if self.ratings is not None else "", ", timestamps" if self.timestamps is not None else ""]
        )
        return (
            f"Interactions({len(self)} rows, {self.n_users} users x {self.n_items} items{extra}"
            f"{', source=' + repr(self.source) if self.source else ''})"
        )

    # -- views ---------------------------------------------------------------------------------
    def pair_keys(self) -> np.ndarray:
        """``user * n_items + item`` per row (int64): one key per (user, item) pair."""
        return self.users * np.int64(self.n_items) + self.items

    def n_duplicates(self) -> int:
        """Rows whose (user, item) pair already occurred in an earlier row."""
        return len(self) - len(np.unique(self.pair_keys()))

    def to_csr(self, values: str = "ones", *, duplicates: str = "error") -> sp.csr_matrix:
        """The log as a ``(n_users, n_items)`` CSR matrix with sorted indices and no duplicate entries.

        Parameters
        ----------
        values : {"ones", "ratings"}
            ``"ones"``: 1.0 for every observed pair (implicit feedback; repeated pairs stay 1.0).
            ``"ratings"``: the rating of each pair (needs ``ratings``).
        duplicates : {"error", "last", "first", "max", "sum"}
            How ``values="ratings"`` combines several rows of the same pair: refuse (default),
            the last or first row in log order, the largest, or the sum. Ignored for ``"ones"``.

        Returns
        -------
        scipy.sparse.csr_matrix of float32
            Built from a sort of the pair keys; never densified.
        """
        if values not in ("ones", "ratings"):
            raise ValueError(f"values: expected 'ones' or 'ratings', got {values!r}")
        if duplicates not in ("error", "last", "first", "max", "sum"):
            raise ValueError(f"duplicates: expected 'error', 'last', 'first', 'max' or 'sum', got {duplicates!r}")
        if values == "ratings" and self.ratings is None:
            raise ValueError("values: 'ratings' requested but this log has no ratings")
        keys = self.pair_keys()
        # A stable sort keeps log order within a pair, which "first"/"last" rely on.
        order = np.argsort(keys, kind="stable")
        skeys = keys[order]
        first = np.ones(len(skeys), dtype=bool)
        first[1:] = skeys[1:] != skeys[:-1]
        starts = np.flatnonzero(first)
        ukeys = skeys[starts]
        if values == "ones":
            data = np.ones(len(ukeys), dtype=np.float32)
        else:
            r = self.ratings[order]
            has_dups = len(ukeys) != len(skeys)
            if has_dups and duplicates == "error":
                raise ValueError(
                    f"duplicates: {len(skeys) - len(ukeys)} repeated (user, item) rows; "
                    f"choose how to combine their ratings (duplicates='last', 'first', "
                    f"'max' or 'sum')"
                )
            if not has_dups or duplicates == "first":
                data = r[starts]
            elif duplicates == "last":
                ends = np.append(starts[1:], len(skeys)) - 1
                data = r[ends]
            elif duplicates == "max":
                data = np.maximum.reduceat(r, starts) if len(r) else r
            else:
                data = np.add.reduceat(r, starts) if len(r) else r
            data = np.asarray(data, dtype=np.float32)
        n_items = np.int64(self.n_items)
        rows = ukeys // n_items if len(ukeys) else ukeys
        cols = ukeys - rows * n_items
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=self.n_users), out=indptr[1:])
        mat = sp.csr_matrix(
            (data, cols.astype(np.int32 if self.n_items < 2**31 else np.int64), indptr),
            shape=(self.n_users, self.n_items),
        )
        mat.has_sorted_indices = True  # keys were sorted: row-major then column
        return mat

    def subset(self, mask) -> Interactions:
        """Rows selected by a boolean mask (length ``len(self)``) or an index array; maps and features kept."""
        m = np.asarray(mask)
        if m.dtype == bool:
            if m.shape != (len(self),):
                raise ValueError(f"mask: boolean mask must have shape ({len(self)},), got {m.shape}")
        elif m.dtype.kind in "iu" or m.size == 0:
            m = m.astype(np.int64).reshape(-1)
            if m.size and (m.min() < -len(self) or m.max() >= len(self)):
                raise ValueError(f"mask: row index out of range for {len(self)} rows")
        else:
            raise ValueError(f"mask: expected a boolean mask or integer row indices, got dtype {m.dtype}")
        return Interactions(
            users=self.users[m],
            items=self.items[m],
            ratings=None if self.ratings is None else self.ratings[m],
            timestamps=None if self.timestamps is None else self.timestamps[m],
            user_map=self.user_map,
            item_map=self.item_map,
            item_features=self.item_features,
            user_features=self.user_features,
            source=self.source,
        )

    def to_frame(self, raw_ids: bool = False) -> pd.DataFrame:
        """Rows as a DataFrame (``user``, ``item``[, ``rating``][, ``timestamp``]); codes or raw ids."""
        cols = {
            "user": self.user_map.decode(self.users) if raw_ids else self.users,
            "item": self.item_map.decode(self.items) if raw_ids else self.items,
        }
        if self.ratings is not None:
            cols["rating"] = self.ratings
        if self.timestamps is not None:
            cols["timestamp"] = self.timestamps
        return pd.DataFrame(cols)
