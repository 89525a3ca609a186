"""Reading delimited text files so that every failure is a ``ValueError`` naming the file.

pandas reports a wrong encoding as a bare ``UnicodeDecodeError``, a ``.gz`` that is not gzip as
``BadGzipFile``, and reads UTF-16 text as columns full of NUL characters. :func:`sniff` looks at the
first 64 KiB (decompressed) before pandas does and turns each of those into one clear sentence;
:func:`read_table` wraps the parse itself.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import lzma
import warnings
import zipfile
import zlib
from pathlib import Path

import pandas as pd

__all__ = ["sniff", "read_table", "header_fields", "COMPRESSION"]

COMPRESSION = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip", ".zst": "zstd"}
_SNIFF_BYTES = 1 << 16
# Exceptions that mean "this file is not what its name or the encoding says" (not a bug of ours).
_BAD_FILE = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile, ValueError)


def _compression(path: Path) -> str | None:
    return COMPRESSION.get(path.suffix.lower())


def _head_bytes(path: Path) -> bytes:
    kind = _compression(path)
    if kind == "gzip":
        with gzip.open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    if kind == "bz2":
        with bz2.open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    if kind == "xz":
        with lzma.open(path, "rb") as fh:
            return fh.read(_SNIFF_BYTES)
    if kind == "zip":
        with zipfile.ZipFile(path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            if len(names) != 1:
                raise ValueError(f"expected exactly one file inside the zip archive, found {len(names)}")
            with zf.open(names[0]) as fh:
                return fh.read(_SNIFF_BYTES)
    with open(path, "rb") as fh:  # zstd: pandas decompresses it; we only check the raw bytes exist
        return fh.read(_SNIFF_BYTES) if kind is None else b""


def sniff(path: Path, encoding: str) -> None:
    """Refuse, with the file's name, what pandas would misread or fail on obscurely.

    Parameters
    ----------
    path : Path
        The file (a compression suffix selects the decompressor, as pandas does).
    encoding : str
        The text encoding the caller will read it with.

    Raises
    ------
    ValueError
        Missing or empty file, damaged compressed stream, NUL bytes (binary data or UTF-16/32 read as
        an 8-bit encoding), bytes that are not valid in ``encoding``, an unknown encoding name.
    """
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: the file is empty")
    try:
        codec = codecs.lookup(encoding)
    except LookupError as exc:
        raise ValueError(f"encoding: unknown text encoding {encoding!r}") from exc
    kind = _compression(path)
    try:
        head = _head_bytes(path)
    except _BAD_FILE as exc:
        what = f"a valid {kind} file" if kind else "readable"
        raise ValueError(f"{path}: not {what} ({type(exc).__name__}: {exc})") from exc
    wide = codec.name.startswith(("utf-16", "utf-32"))
    if not wide and b"\x00" in head:
        bom16 = head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
        hint = (
            "it looks like UTF-16 text"
            if bom16 or head[1::2].count(0) > len(head) // 4
            else "binary data, or text in UTF-16/UTF-32"
        )
        raise ValueError(
            f"{path}: holds NUL bytes ({hint}), not {encoding} text; convert it to UTF-8 "
            f"or pass encoding= (e.g. 'utf-16')"
        )
    try:
        # Incremental, not final: the 64 KiB cut may split a multi-byte character.
        codec.incrementaldecoder("strict").decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not valid {encoding} text (byte {exc.start}: {exc.reason}); pass "
            f"encoding= (e.g. 'latin-1' or 'utf-16') or convert the file to UTF-8"
        ) from exc


def read_table(path: Path, *, what: str = "parse", **kwargs) -> pd.DataFrame:
    """``pandas.read_csv(path, **kwargs)`` with every parse, encoding or decompression failure as a
    ``ValueError`` naming ``path`` (an empty file included)."""
    try:
        with warnings.catch_warnings():
            # A row longer than the header is made an error below, not a pandas warning.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, **kwargs)
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"{path}: the file is empty") from exc
    except (pd.errors.ParserError, pd.errors.ParserWarning, csv.Error) as exc:
        raise ValueError(f"{path}: cannot {what} ({str(exc).strip()})") from exc
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path}: not valid {kwargs.get('encoding', 'utf-8')} text ({exc.reason} at "
            f"byte {exc.start} of a block); pass encoding= or convert the file to UTF-8"
        ) from exc
    except _BAD_FILE as exc:
        raise ValueError(f"{path}: cannot {what} ({type(exc).__name__}: {exc})") from exc


def header_fields(path: Path, *, sep: str, encoding: str) -> list[str]:
    """The header row's fields exactly as written (pandas renames duplicates; this does not)."""
    head = read_table(
        path,
        sep=sep,
        header=None,
        nrows=1,
        dtype=str,
        encoding=encoding,
        keep_default_na=False,
        engine="c" if len(sep) == 1 else "python",
        what="read the header",
    )
    return [str(v) for v in head.iloc[0].tolist()] if len(head) else []
