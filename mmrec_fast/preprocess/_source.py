"""What image and audio sources have in common: a file given as a path, bytes or an open file object."""

from __future__ import annotations

import os

__all__ = ["file_bytes"]


def file_bytes(source, what: str) -> bytes | None:
    """``b"file:" + content`` of a file-like source (path, bytes, seekable file object), else ``None``.

    The embedding cache keys media by their bytes, read but not decoded. A file object is read and
    rewound, so it can still be decoded afterwards. A path that does not exist raises
    ``FileNotFoundError`` naming it (``what`` says which kind of file was expected).
    """
    if isinstance(source, (str, os.PathLike)):
        if not os.path.isfile(source):
            raise FileNotFoundError(f"no such {what} file: {os.fspath(source)!r}")
        with open(source, "rb") as fh:
            return b"file:" + fh.read()
    if isinstance(source, (bytes, bytearray, memoryview)):
        return b"file:" + bytes(source)
    if hasattr(source, "read") and hasattr(source, "seek"):
        pos = source.tell()
        data = source.read()
        source.seek(pos)
        return b"file:" + data
    return None
