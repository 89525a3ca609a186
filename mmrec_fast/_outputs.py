"""Writing to paths a user named without ever destroying what was there.

One job: decide whether a user-named output path may be (re)placed, and place it atomically.

* A **directory output** (a saved model, the demo's output folder) may go where nothing is, into an
  empty directory, or -- with ``overwrite`` -- over a directory this library wrote earlier, recognised
  by its manifest and holding nothing the manifest does not list. A regular file, a symbolic link, or a
  directory with any other content is never replaced, ``overwrite`` or not.
* A **file output** (recommendation lists, a metrics JSON) may go where nothing is, or over an
  existing file with ``overwrite``; never over a directory, and never over one of the command's inputs.

Contents are written into a hidden sibling first and renamed into place, so a crash or Ctrl-C leaves
either the old output or the new one, never a mixture. Where Linux offers it, replacing a directory
is one ``renameat2(RENAME_EXCHANGE)``; elsewhere it is two renames, the old one restored if the second fails.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import secrets
import shutil
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "sha256_file",
    "list_files",
    "check_output_dir",
    "make_staging_dir",
    "replace_dir",
    "check_output_file",
    "write_file_atomically",
]

# Bytes read per step when hashing: large enough for full disk speed, small enough to stay in cache.
_HASH_CHUNK = 1 << 20
# How many offending names an error message shows.
_SHOW = 3

#: A recogniser: the set of relative file paths (POSIX form) that this library wrote in a directory,
#: or None when the directory is not one of its outputs.
Recogniser = Callable[[Path], "frozenset[str] | None"]


def sha256_file(path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB chunks, so any size fits in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def list_files(directory) -> list[str]:
    """Every entry under ``directory`` that is not a plain directory, as sorted relative POSIX paths.

    Symbolic links (to files or directories) are listed as entries and not followed: this library
    never writes one, so a link always counts as something it did not write.
    """
    root = Path(directory)
    found = []
    for here, dirs, files in os.walk(root):
        base = Path(here)
        for name in files:
            found.append((base / name).relative_to(root).as_posix())
        for name in list(dirs):
            if (base / name).is_symlink():
                found.append((base / name).relative_to(root).as_posix())
                dirs.remove(name)
    return sorted(found)


def _show(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" and {len(names) - _SHOW} more" if len(names) > _SHOW else ""
    return ", ".join(repr(n) for n in names[:_SHOW]) + more


def check_output_dir(
    path, *, argument: str, overwrite: bool, recognise: Recogniser, what: str, overwrite_hint: str = "overwrite=True"
) -> Path:
    """Raise ``ValueError`` naming ``argument`` unless a directory output may be placed at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        Where the caller wants the directory.
    argument : str
        The argument's name for messages (``"directory"``, ``"--out"``).
    overwrite : bool
        Allow replacing a directory that ``recognise`` identifies as this library's output.
    recognise : callable
        ``recognise(path) -> frozenset of relative paths | None`` (see :data:`Recogniser`).
    what : str
        What the output is, for messages (``"saved model"``).
    overwrite_hint : str
        How the caller asks for ``overwrite`` (``"overwrite=True"`` or ``"--overwrite"``).

    Returns
    -------
    pathlib.Path
        The absolute target path (``"."`` and ``".."`` normalised, symbolic links not resolved).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument}: expected a path, got {type(path).__name__}")
    target = Path(os.path.abspath(os.fspath(path)))
    if target.is_symlink():
        raise ValueError(
            f"{argument}: {str(path)!r} is a symbolic link; refusing to replace it (give the real directory path)"
        )
    if not target.exists():
        if target.parent.exists() and not target.parent.is_dir():
            raise ValueError(f"{argument}: {str(target.parent)!r} is a file, not a directory")
        return target
    if not target.is_dir():
        raise ValueError(
            f"{argument}: {str(path)!r} is an existing file, not a directory; refusing to "
            f"replace it (a {what} is a directory: choose a new path)"
        )
    top = [p.name for p in target.iterdir()]
    if not top:
        return target
    owned = recognise(target)
    if owned is None:
        # Refused without walking the tree: --out ~ must not read the whole home directory first.
        raise ValueError(
            f"{argument}: {str(path)!r} is a non-empty directory that is not a {what} "
            f"(it holds {_show(top)}); refusing to replace it: choose a new or empty directory"
        )
    foreign = set(list_files(target)) - set(owned)
    if foreign:
        raise ValueError(
            f"{argument}: {str(path)!r} is a {what} but also holds files this library did not "
            f"write ({_show(foreign)}); refusing to replace it, even with {overwrite_hint}: "
            f"move them out or choose another directory"
        )
    if not overwrite:
        raise ValueError(
            f"{argument}: {str(path)!r} already holds a {what}; pass {overwrite_hint} to "
            f"replace it, or choose another directory"
        )
    return target


def make_staging_dir(target: Path) -> Path:
    """A new, empty hidden sibling of ``target`` to build an output in (default permissions).

    ``os.mkdir`` rather than ``tempfile.mkdtemp``: the latter creates mode 0700, and the staging
    directory becomes the user's output, which should get their usual permissions.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp"
        try:
            staging.mkdir()
            return staging
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue


_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with Linux ``renameat2``; False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
        return False  # old kernel or a file system without the flag: use the two-rename fallback
    raise OSError(err, os.strerror(err), str(b))


def replace_dir(staging: Path, target: Path, recognise: Recogniser) -> None:
    """Move the finished ``staging`` directory to ``target``, replacing what :func:`check_output_dir` allowed.

    The old directory is deleted only if everything in it is still this library's output (re-checked
    after the swap: a file that appeared meanwhile is kept, with a warning naming where).
    """
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        os.rename(staging, target)  # rename(2) replaces an empty directory atomically
        return
    if _exchange(staging, target):
        old = staging
    else:
        old = target.parent / f".{target.name}.{secrets.token_hex(4)}.old"
        os.rename(target, old)
        try:
            os.rename(staging, target)
        except BaseException:
            os.rename(old, target)
            raise
    owned = recognise(old)
    if owned is not None and set(list_files(old)) <= set(owned):
        shutil.rmtree(old)
    else:
        warnings.warn(
            f"the previous content of {str(target)!r} changed while it was replaced; it was kept at {str(old)!r}",
            RuntimeWarning,
            stacklevel=3,
        )


def check_output_file(
    path, *, argument: str, overwrite: bool, inputs: Iterable = (), overwrite_hint: str = "--overwrite"
) -> Path:
    """Raise ``ValueError`` naming ``argument`` unless a file output may be written at ``path``.

    Parameters
    ----------
    path : str or os.PathLike
        The output file.
    argument : str
        The argument's name for messages (``"--out"``).
    overwrite : bool
        Allow replacing an existing regular file.
    inputs : iterable of paths
        Files or directories the command reads: the output may be neither one of them nor inside one
        of the directories, ``overwrite`` or not.
    overwrite_hint : str
        How the caller asks for ``overwrite``.

    Returns
    -------
    pathlib.Path
        The absolute output path.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{argument}: expected a path, got {type(path).__name__}")
    target = Path(os.path.abspath(os.fspath(path)))
    if target.is_dir():
        raise ValueError(f"{argument}: {str(path)!r} is a directory; give a file name")
    for source in inputs:
        if source is None:
            continue
        source = Path(os.path.abspath(os.fspath(source)))
        if source.is_dir() and source.resolve() == target.parent.resolve():
            raise ValueError(
                f"{argument}: {str(path)!r} is inside the input directory {str(source)!r}; write it elsewhere"
            )
        if target.exists() and source.exists() and os.path.samefile(source, target):
            raise ValueError(f"{argument}: {str(path)!r} is an input of this command; refusing to replace it")
    if target.parent.exists() and not target.parent.is_dir():
        raise ValueError(f"{argument}: {str(target.parent)!r} is a file, not a directory")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise ValueError(f"{argument}: {str(path)!r} already exists; pass {overwrite_hint} to replace it")
    return target


def write_file_atomically(path, writer: Callable[[Path], object]) -> Path:
    """Call ``writer(temporary_path)`` and rename the result to ``path`` (parents created).

    The temporary file is a hidden sibling with the same extension (writers that choose a format by
    extension still work); it is removed if ``writer`` fails or is interrupted.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}"
    try:
        writer(temporary)
        os.replace(temporary, target)
    except BaseException:
        try:
            temporary.unlink()
        except FileNotFoundError:
            pass
        raise
    return target
