"""Raw id columns -> exact ids (int64 or text): the one place that decides what an id value *is*.

Policy (shared by every loader, so a CSV and a Parquet copy of one log give the same ids):

* **Integers** that all fit int64 are int64 ids. Integers that do not (``18446744073709551615``, a
  Parquet ``uint64`` hash, a 30-digit number) make the whole column **text ids** holding each value's
  decimal digits: exact, never wrapped, never rounded through float64.
* **Text** columns: surrounding whitespace is trimmed. If every token is a canonical integer
  (``-12``, ``0``, ``345``; no ``+``, no leading zero) the column is an integer column as above.
  If every token is a number and some are written as floats (``1.0``, ``2e3``) each must be an exact
  integer (checked in decimal, not float64) and the column is an integer column; ``1.5`` is an error.
  Anything else -- a token with a leading zero (``007``, which must not merge with ``7``), letters,
  ``inf`` -- keeps the whole column as text ids, compared exactly.
* **Float** columns: each value must be a finite exact integer (then as for integers); ``1.5`` or
  ``inf`` is an error.
* **Missing** ids (empty fields, ``NA``/``NaN``/``null`` tokens, nulls, whitespace-only fields) are an
  error naming the first data row. Booleans, dates, times, durations, bytes, lists, structs and mixed
  object columns are an error naming the type: they are not ids.

Every error is a ``ValueError`` that starts with the source (the file) and names the column.
The work is done on the column's *distinct* values (``pandas.factorize``), so a 25-million-row log with
200,000 users costs one hash pass plus Python work on 200,000 tokens.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

__all__ = ["id_values"]

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
# Canonical integer text: what str(int) writes. "007", "+7" and "-0" are not canonical.
_CANONICAL_INT = re.compile(r"^(0|-?[1-9][0-9]*)$")
# A decimal number as CSV writers spell it (no "inf"/"nan", no digit separators).
_NUMBER = re.compile(r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$")
# Integer part with a leading zero followed by a digit: a code such as "007" or "00.5".
_LEADING_ZERO = re.compile(r"^[+-]?0[0-9]")
# Float-syntax ids beyond this many digits are refused: no integer type holds them, and expanding
# "1e999999999" to its digits would take the process down.
_MAX_DIGITS = 40
# pandas.api.types.infer_dtype results that are ids (everything else is refused with its name).
_TEXT_KINDS = ("string", "empty")
_INT_KINDS = ("integer",)


def _fail(source: str, name: str, what: str) -> ValueError:
    return ValueError(f"{source}: column {name!r} {what}")


def _ints_or_text(values: list) -> np.ndarray:
    """Exact Python ints -> int64 when all fit, else their decimal text (never a wrapped int64)."""
    if all(_INT64_MIN <= v <= _INT64_MAX for v in values):
        return np.array(values, dtype=np.int64)
    return np.array([str(v) for v in values], dtype=object)


def _first_row(codes: np.ndarray, position: int) -> int:
    return int(np.flatnonzero(codes == position)[0])


def _from_text(tokens: np.ndarray, codes: np.ndarray, source: str, name: str) -> np.ndarray:
    """Distinct text tokens -> int64 or text ids under the policy of the module docstring."""
    stripped = [str(t).strip() for t in tokens]
    for pos, tok in enumerate(stripped):
        if not tok:
            raise _fail(source, name, f"has a blank id (whitespace only) at data row {_first_row(codes, pos)}")
    if all(_CANONICAL_INT.match(t) for t in stripped):
        return _ints_or_text([int(t) for t in stripped])
    if all(_NUMBER.match(t) for t in stripped) and not any(_LEADING_ZERO.match(t) for t in stripped):
        values = []
        for pos, tok in enumerate(stripped):
            try:
                dec = Decimal(tok)
            except InvalidOperation:  # pragma: no cover - _NUMBER admits only what Decimal reads
                dec = Decimal("NaN")
            if not dec.is_finite() or dec.adjusted() >= _MAX_DIGITS:
                raise _fail(
                    source,
                    name,
                    f"holds the number {tok!r} (data row {_first_row(codes, pos)}), "
                    f"too large for an id; write such ids as digits or text",
                )
            if dec != dec.to_integral_value():
                raise _fail(
                    source,
                    name,
                    f"holds the non-integer number {tok!r} (data row "
                    f"{_first_row(codes, pos)}); ids must be integers or text",
                )
            values.append(int(dec))
        return _ints_or_text(values)
    # Text ids, compared exactly (after trimming): "007" and "7" stay two ids.
    return np.array(stripped, dtype=object)


def _from_floats(values: np.ndarray, codes: np.ndarray, source: str, name: str) -> np.ndarray:
    bad = ~np.isfinite(values) | (values != np.round(values))
    if bad.any():
        pos = int(np.flatnonzero(bad)[0])
        raise _fail(
            source,
            name,
            f"holds the non-integer number {values[pos]!r} (data row "
            f"{_first_row(codes, pos)}); ids must be integers or text",
        )
    # int(float) is exact: 1e20 becomes 100000000000000000000, not a wrapped int64.
    return _ints_or_text([int(v) for v in values.tolist()])


def _refuse(kind: str, source: str, name: str, example) -> ValueError:
    return _fail(
        source, name, f"holds {kind} values (e.g. {example!r}), which are not ids; ids must be integers or text"
    )


def id_values(col, source: str, name: str) -> np.ndarray:
    """Raw ids of one column as an int64 array, or an object array of ``str`` (see the module policy).

    Parameters
    ----------
    col : pandas.Series or array-like
        The column as read (any dtype: int, uint64, float, str, object, categorical, ...).
    source : str
        The file (or dataset) it came from: every error message starts with it.
    name : str
        The column's name, for messages.

    Returns
    -------
    numpy.ndarray
        int64 when every id is an integer that fits int64, else object (``str``) ids; one per row.

    Raises
    ------
    ValueError
        Missing or blank ids, non-integer numbers, values that are not ids (booleans, dates, lists...).
    """
    s = col if isinstance(col, pd.Series) else pd.Series(col)
    if isinstance(s.dtype, pd.CategoricalDtype):
        codes = s.cat.codes.to_numpy().astype(np.int64)
        uniques = s.cat.categories
    else:
        kind = s.dtype.kind
        if kind == "i":
            return s.to_numpy().astype(np.int64, copy=False)  # no missing value fits an int dtype
        if kind == "u" and (len(s) == 0 or s.max() <= _INT64_MAX):
            return s.to_numpy().astype(np.int64)
        if kind == "b" or str(s.dtype) == "boolean":
            raise _refuse("boolean", source, name, s.iloc[0])
        if kind in "Mm" or isinstance(s.dtype, pd.DatetimeTZDtype):
            raise _refuse("date/time", source, name, str(s.iloc[0]))
        if kind == "c":
            raise _refuse("complex", source, name, s.iloc[0])
        if kind == "O" or kind == "U" or kind == "S":
            inferred = pd.api.types.infer_dtype(s, skipna=True)
            if inferred not in _TEXT_KINDS + _INT_KINDS:
                first = s[s.notna()]
                example = first.iloc[0] if len(first) else None
                label = {
                    "bytes": "binary",
                    "boolean": "boolean",
                    "mixed": "mixed-type",
                    "mixed-integer": "mixed integer/text",
                }.get(inferred, inferred)
                if isinstance(example, (list, tuple, np.ndarray)):
                    label = "list"
                elif isinstance(example, dict):
                    label = "struct/map"
                raise _refuse(label, source, name, example)
        codes, uniques = pd.factorize(s, use_na_sentinel=True)
    if len(codes) and (codes < 0).any():
        rows = np.flatnonzero(codes < 0)
        raise _fail(source, name, f"has {len(rows)} missing id(s) (first at data row {rows[0]})")
    values = np.asarray(uniques)
    if values.dtype.kind in "iu":
        converted = _ints_or_text([int(v) for v in values.tolist()])
    elif values.dtype.kind == "f":
        converted = _from_floats(values, codes, source, name)
    elif values.dtype.kind == "b":
        raise _refuse("boolean", source, name, values[0])
    else:
        objs = values.tolist()
        if all(isinstance(v, str) for v in objs):
            converted = _from_text(values, codes, source, name)
        elif all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in objs):
            converted = _ints_or_text([int(v) for v in objs])
        else:
            example = next(v for v in objs if not isinstance(v, str))
            raise _refuse(type(example).__name__, source, name, example)
    return converted[codes] if len(codes) else np.empty(0, dtype=converted.dtype)
