"""Stable mapping between raw user/item ids and dense integer codes ``0 .. n-1``."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

__all__ = ["IdMap"]

# How many unknown ids an error message lists before it says "and N more".
_SHOW = 5
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _describe(values) -> str:
    values = list(values)
    shown = ", ".join(repr(v) for v in values[:_SHOW])
    more = f" and {len(values) - _SHOW} more" if len(values) > _SHOW else ""
    return shown + more


class IdMap:
    """Bijection raw id <-> dense code, with codes assigned in **sorted order of the raw ids**.

    Sorted (rather than first-appearance) order makes the codes a function of the *set* of ids
    alone: re-reading the same log in another row order, or a shuffled copy of it, gives the same
    codes, so a saved model stays valid. Integer ids sort numerically, string ids lexicographically;
    a mix of both is refused (``"10"`` and ``10`` would otherwise be silently different ids).

    Parameters
    ----------
    ids : array-like
        Raw ids (integers or strings); duplicates are allowed and collapse to one code.
    name : str
        What the ids are ("user", "item"), used in error messages.

    Examples
    --------
    >>> m = IdMap([30, 10, 20, 10], name="item")
    >>> m.encode([20, 30]).tolist(), m.decode([0]).tolist(), len(m)
    ([1, 2], [10], 3)
    """

    def __init__(self, ids, name: str = "id"):
        self.name = str(name)
        arr = np.asarray(ids)
        if arr.ndim != 1:
            arr = arr.reshape(-1)
        if arr.dtype.kind == "u" and arr.size and arr.max() > _INT64_MAX:
            # A uint64 id above int64's range would wrap onto a negative id and merge with it.
            raise ValueError(
                f"{self.name} ids: {_describe(arr[arr > _INT64_MAX])} exceed int64; pass "
                f"such ids as strings (the loaders keep them as text)"
            )
        if arr.dtype.kind in "iu":
            uniq = np.unique(arr.astype(np.int64))
        elif arr.dtype.kind in "US":
            uniq = np.unique(arr.astype(str)).astype(object)
        elif arr.dtype.kind == "f":
            # Integer-valued floats (ids read from a column that also held NaN, or a float column)
            # are integer ids; anything else is not an id.
            if arr.size and (
                not np.isfinite(arr).all() or (arr != np.round(arr)).any() or (np.abs(arr) >= 2.0**63).any()
            ):
                bad = ~np.isfinite(arr) | (arr != np.round(arr)) | (np.abs(arr) >= 2.0**63)
                raise ValueError(
                    f"{self.name} ids: float ids must be finite integers within int64, got e.g. {_describe(arr[bad])}"
                )
            uniq = np.unique(arr.astype(np.int64))
        elif arr.dtype.kind == "O":
            kinds = {type(v) for v in arr}
            if kinds and all(issubclass(t, (int, np.integer)) and not issubclass(t, bool) for t in kinds):
                big = [v for v in arr.tolist() if not _INT64_MIN <= v <= _INT64_MAX]
                if big:
                    raise ValueError(
                        f"{self.name} ids: {_describe(big)} do not fit int64; pass such "
                        f"ids as strings (the loaders keep them as text)"
                    )
                uniq = np.unique(arr.astype(np.int64))
            elif kinds and all(issubclass(t, str) for t in kinds):
                uniq = np.unique(arr.astype(str)).astype(object)
            elif not kinds:
                uniq = np.empty(0, dtype=np.int64)
            else:
                raise ValueError(
                    f"{self.name} ids: must be all integers or all strings, got types "
                    f"{sorted(t.__name__ for t in kinds)} (missing values count as float)"
                )
        else:
            raise ValueError(f"{self.name} ids: unsupported dtype {arr.dtype} (use integers or strings)")
        self._ids = uniq
        self._index = pd.Index(uniq)

    # -- basic protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._ids)

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, IdMap)
            and len(self) == len(other)
            and self._ids.dtype == other._ids.dtype
            and bool(np.all(self._ids == other._ids))
        )

    def __repr__(self) -> str:
        return f"IdMap(name={self.name!r}, n={len(self)}, ids=[{_describe(self._ids[:3])}...])"

    @property
    def ids(self) -> np.ndarray:
        """Raw ids in code order (``ids[code] == raw``); int64 or object (str) array. Read-only copy."""
        return self._ids.copy()

    @property
    def is_integer(self) -> bool:
        return self._ids.dtype.kind in "iu"

    # -- mapping -------------------------------------------------------------------------------
    def encode(self, raw) -> np.ndarray:
        """Codes (int64) of raw ids; unknown ids raise ``ValueError`` naming (up to 5 of) them."""
        arr = np.asarray(raw)
        scalar = arr.ndim == 0
        arr = arr.reshape(-1)
        if arr.size == 0:
            return np.empty(0, dtype=np.int64)
        if self.is_integer and arr.dtype.kind == "f":
            # Only exact integers inside int64 can be ids: 1e20.astype(int64) would land on INT64_MIN.
            ok = np.isfinite(arr) & (arr == np.round(arr)) & (np.abs(arr) < 2.0**63)
            if not ok.all():
                raise ValueError(
                    f"{self.name} ids: {len(np.unique(arr[~ok]))} unknown id(s) not in the "
                    f"map of {len(self)}: {_describe(pd.unique(arr[~ok]))}"
                )
            arr = arr.astype(np.int64)
        elif self.is_integer and arr.dtype.kind == "u" and arr.max() > _INT64_MAX:
            raise ValueError(
                f"{self.name} ids: {len(np.unique(arr[arr > _INT64_MAX]))} unknown id(s) not "
                f"in the map of {len(self)}: {_describe(np.unique(arr[arr > _INT64_MAX]))}"
            )
        elif not self.is_integer and arr.dtype.kind in "iuf":
            # Compare as strings would silently accept 1 for "1"; the caller must decide.
            raise ValueError(
                f"{self.name} ids: this map holds string ids but got numeric "
                f"values (dtype {arr.dtype}); convert them with astype(str) first"
            )
        codes = self._index.get_indexer(arr)
        if (codes < 0).any():
            unknown = pd.unique(arr[codes < 0])
            raise ValueError(
                f"{self.name} ids: {len(unknown)} unknown id(s) not in the map of {len(self)}: {_describe(unknown)}"
            )
        codes = codes.astype(np.int64, copy=False)
        return codes[0] if scalar else codes

    def decode(self, codes) -> np.ndarray:
        """Raw ids of codes; codes outside ``0 .. n-1`` raise ``ValueError``."""
        arr = np.asarray(codes)
        if arr.dtype.kind not in "iu":
            raise ValueError(f"codes: expected integers, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= len(self)):
            bad = arr[(arr < 0) | (arr >= len(self))]
            raise ValueError(f"codes: {self.name} codes out of range 0..{len(self) - 1}: {_describe(np.unique(bad))}")
        return self._ids[arr]

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> str:
        """JSON text ``{"name", "kind": "int"|"str", "ids": [...]}`` (ids in code order)."""
        kind = "int" if self.is_integer else "str"
        ids = self._ids.tolist() if kind == "int" else [str(v) for v in self._ids]
        return json.dumps({"name": self.name, "kind": kind, "ids": ids})

    @classmethod
    def from_json(cls, text: str) -> IdMap:
        """Inverse of :meth:`to_json`; the codes are reproduced exactly."""
        try:
            obj = json.loads(text)
            kind, ids, name = obj["kind"], obj["ids"], obj.get("name", "id")
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"text: not an IdMap JSON document ({exc})") from exc
        if kind not in ("int", "str"):
            raise ValueError(f"text: unknown id kind {kind!r} (expected 'int' or 'str')")
        if not isinstance(ids, list):
            raise ValueError(f"text: 'ids' must be a list, got {type(ids).__name__}")
        if kind == "int" and not all(
            isinstance(v, int) and not isinstance(v, bool) and _INT64_MIN <= v <= _INT64_MAX for v in ids
        ):
            raise ValueError("text: an 'int' id map holds values that are not int64 integers")
        if kind == "str" and not all(isinstance(v, str) for v in ids):
            raise ValueError("text: a 'str' id map holds values that are not strings")
        arr = np.asarray(ids, dtype=np.int64) if kind == "int" else np.asarray(ids, dtype=object)
        out = cls(arr, name=name)
        if len(out) != len(ids):
            raise ValueError("text: the id list has duplicates; it was not written by IdMap.to_json")
        return out

    def save(self, path) -> None:
        """Write :meth:`to_json` to ``path``."""
        with open(os.fspath(path), "w", encoding="utf-8") as fh:
            fh.write(self.to_json())

    @classmethod
    def load(cls, path) -> IdMap:
        """Read a map written by :meth:`save`."""
        with open(os.fspath(path), encoding="utf-8") as fh:
            return cls.from_json(fh.read())
