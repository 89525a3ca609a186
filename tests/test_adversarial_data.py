"""Adversarial inputs for the loaders, the embedding cache and the backend registry (issue 14, points
3, 12, 13, 14): nothing silently wrong, every failure a ValueError naming the file.

The loader cases are one table (:data:`CASES`): each writes a file, loads it, and says what must come
back -- the exact raw ids, or a ValueError whose message names the file and matches a pattern.
:func:`outcome` classifies a run as ``correct`` / ``clean error`` / ``crash`` / ``wrong result``, which
is also how the before/after table of the issue was measured (the same table run on the old code).
"""

from __future__ import annotations

import gzip
import os
import sys
import textwrap
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from mmrec_fast.data import IdMap, load_grouplens, load_interactions

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

U64_MAX = 2**64 - 1
GENRES = 19


# ---------------------------------------------------------------------------------------------
# the case table
# ---------------------------------------------------------------------------------------------
@dataclass
class Case:
    """One adversarial input. ``users``/``items``: the raw ids expected back row by row; ``error``:
    a regex the ValueError must match (the file name is checked separately)."""

    name: str
    category: str
    write: Callable[[Path], Path]
    users: list | None = None
    items: list | None = None
    error: str | None = None
    kwargs: dict = field(default_factory=dict)
    loader: str = "interactions"


def _text(name: str, data, **_):
    def write(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
        return path

    return write


def _gz(name: str, data: bytes, truncate: int | None = None):
    def write(tmp: Path) -> Path:
        blob = gzip.compress(data)
        path = tmp / name
        path.write_bytes(blob[:truncate] if truncate else blob)
        return path

    return write


def _parquet(u, i=None, names=("u", "i")):
    def write(tmp: Path) -> Path:
        cols = [u, i if i is not None else pa.array(list(range(len(u))), pa.int64())]
        path = tmp / "log.parquet"
        pq.write_table(pa.Table.from_arrays(cols, names=list(names)), path)
        return path

    return write


def _parquet_dup_columns(tmp: Path) -> Path:
    path = tmp / "dup.parquet"
    pq.write_table(pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])], names=["u", "u", "i"]), path)
    return path


def _grouplens(*, data="1\t10\t5\t100\n2\t20\t3\t200\n", item=None, genre=None, data_bytes=None):
    flags = "|".join(["0"] * GENRES)

    def write(tmp: Path) -> Path:
        folder = tmp / "ml"
        folder.mkdir()
        (folder / "u.data").write_bytes(data_bytes if data_bytes is not None else data.encode())
        (folder / "u.item").write_bytes(
            (item if item is not None else f"10|A (1990)|||x|{flags}\n20|B (1991)|||y|{flags}\n").encode("latin-1")
        )
        if genre is not None:
            (folder / "u.genre").write_text(genre)
        return folder

    return write


_GENRE_OK = "".join(f"g{j}|{j}\n" for j in range(GENRES))

CASES = [
    # -- ids beyond int64, floats, NaN: exact round trip or an error naming file and column -------
    Case(
        "uint64-max-and-minus-one",
        "ids",
        _text("log.csv", f"u,i\n{U64_MAX},1\n-1,2\n"),
        users=[str(U64_MAX), "-1"],
        items=[1, 2],
    ),
    Case(
        "uint64-max-alone", "ids", _text("log.csv", f"u,i\n{U64_MAX},1\n5,2\n"), users=[str(U64_MAX), "5"], items=[1, 2]
    ),
    Case(
        "1e20-and-int",
        "ids",
        _text("log.csv", "u,i\n1e20,1\n5,2\n"),
        users=["100000000000000000000", "5"],
        items=[1, 2],
    ),
    Case(
        "25-digit-id",
        "ids",
        _text("log.csv", "u,i\n1234567890123456789012345,1\n5,2\n"),
        users=["1234567890123456789012345", "5"],
        items=[1, 2],
    ),
    Case(
        "2^53+1-beside-float",
        "ids",
        _text("log.csv", "u,i\n9007199254740993,1\n1.0,2\n"),
        users=[9007199254740993, 1],
        items=[1, 2],
    ),
    Case("leading-zero-vs-plain", "ids", _text("log.csv", "u,i\n007,1\n7,2\n"), users=["007", "7"], items=[1, 2]),
    Case("float-written-ints", "ids", _text("log.csv", "u,i\n1.0,1\n2.0,2\n"), users=[1, 2], items=[1, 2]),
    Case("non-integer-float", "ids", _text("log.csv", "u,i\n1.5,1\n2,2\n"), error=r"column 'u'.*non-integer.*1\.5"),
    Case("nan-token", "ids", _text("log.csv", "u,i\nNaN,1\n2,2\n"), error=r"column 'u' has 1 missing id.*row 0"),
    Case("empty-field", "ids", _text("log.csv", "u,i\n1,\n2,2\n"), error=r"column 'i' has 1 missing id"),
    Case("blank-id", "ids", _text("log.csv", "u,i\n  ,1\n2,2\n"), error=r"column 'u'.*blank"),
    Case("huge-exponent", "ids", _text("log.csv", "u,i\n1e999999999,1\n"), error=r"column 'u'.*too large"),
    Case("mixed-int-and-text", "ids", _text("log.csv", "u,i\n5,1\nabc,2\n"), users=["5", "abc"], items=[1, 2]),
    Case("negative-ids", "ids", _text("log.csv", "u,i\n-3,1\n4,-2\n"), users=[-3, 4], items=[1, -2]),
    Case("whitespace-around-ids", "ids", _text("log.csv", "u,i\n 1 ,1\n1,2\n"), users=[1, 1], items=[1, 2]),
    Case("inf-token-is-text", "ids", _text("log.csv", "u,i\ninf,1\n2,2\n"), users=["inf", "2"], items=[1, 2]),
    # -- Parquet id types ---------------------------------------------------------------------
    Case(
        "parquet-uint64",
        "parquet",
        _parquet(pa.array([U64_MAX, 1], pa.uint64())),
        users=[str(U64_MAX), "1"],
        items=[0, 1],
    ),
    Case("parquet-uint64-small", "parquet", _parquet(pa.array([3, 1], pa.uint64())), users=[3, 1], items=[0, 1]),
    Case(
        "parquet-uint64-null",
        "parquet",
        _parquet(pa.array([U64_MAX, None], pa.uint64())),
        error=r"column 'u' has 1 missing id",
    ),
    Case(
        "parquet-float-1e20",
        "parquet",
        _parquet(pa.array([1e20, 5.0])),
        users=["100000000000000000000", "5"],
        items=[0, 1],
    ),
    Case("parquet-list", "parquet", _parquet(pa.array([[1, 2], [3]])), error=r"column 'u' holds list"),
    Case("parquet-struct", "parquet", _parquet(pa.array([{"a": 1}, {"a": 2}])), error=r"column 'u' holds struct"),
    Case("parquet-bool", "parquet", _parquet(pa.array([True, False])), error=r"column 'u' holds boolean"),
    Case(
        "parquet-timestamp",
        "parquet",
        _parquet(pa.array([1, 2], pa.timestamp("s"))),
        error=r"column 'u' holds date/time",
    ),
    Case("parquet-binary", "parquet", _parquet(pa.array([b"a", b"b"])), error=r"column 'u' holds binary"),
    Case(
        "parquet-dictionary",
        "parquet",
        _parquet(pa.array(["b", "a"]).dictionary_encode()),
        users=["b", "a"],
        items=[0, 1],
    ),
    Case("parquet-duplicate-column", "parquet", _parquet_dup_columns, error=r"column 'u' appears 2 times"),
    # -- encodings and compression --------------------------------------------------------------
    Case(
        "latin-1-as-utf-8",
        "encoding",
        _text("log.csv", "u,i\ncaf\xe9,1\n".encode("latin-1")),
        error=r"not valid utf-8 text.*encoding=",
    ),
    Case(
        "latin-1-declared",
        "encoding",
        _text("log.csv", "u,i\ncaf\xe9,1\n".encode("latin-1")),
        users=["caf\xe9"],
        items=[1],
        kwargs={"encoding": "latin-1"},
    ),
    Case("utf-16-as-utf-8", "encoding", _text("log.csv", "u,i\n1,2\n".encode("utf-16")), error=r"NUL bytes.*UTF-16"),
    Case(
        "utf-16-declared",
        "encoding",
        _text("log.csv", "u,i\n1,2\n".encode("utf-16")),
        users=[1],
        items=[2],
        kwargs={"encoding": "utf-16"},
    ),
    Case("binary-bytes", "encoding", _text("log.csv", bytes(range(256)) * 4), error=r"NUL bytes"),
    Case("utf-8-bom", "encoding", _text("log.csv", "\ufeffu,i\n1,2\n"), users=[1], items=[2]),
    Case(
        "unknown-encoding",
        "encoding",
        _text("log.csv", "u,i\n1,2\n"),
        error=r"encoding: unknown",
        kwargs={"encoding": "klingon-8"},
    ),
    Case("gz-not-gzip", "encoding", _text("log.csv.gz", "u,i\n1,2\n"), error=r"not a valid gzip file"),
    Case(
        "gz-truncated",
        "encoding",
        _gz("log.csv.gz", b"u,i\n" + b"1,2\n" * 5000, truncate=40),
        error=r"not a valid gzip file|cannot parse",
    ),
    Case("gz-good", "encoding", _gz("log.csv.gz", b"u,i\n1,2\n3,4\n"), users=[1, 3], items=[2, 4]),
    # -- table structure --------------------------------------------------------------------------
    Case("empty-file", "structure", _text("log.csv", ""), error=r"the file is empty"),
    Case("only-newlines", "structure", _text("log.csv", "\n\n\n"), error=r"the file is empty"),
    Case("header-only", "structure", _text("log.csv", "u,i\n"), error=r"no interaction rows"),
    Case(
        "duplicate-header-column", "structure", _text("log.csv", "u,u,i\n1,2,3\n"), error=r"column 'u' appears 2 times"
    ),
    Case("duplicate-unused-column", "structure", _text("log.csv", "x,x,u,i\n1,2,3,4\n"), users=[3], items=[4]),
    Case("crlf", "structure", _text("log.csv", "u,i\r\n1,2\r\n3,4\r\n"), users=[1, 3], items=[2, 4]),
    Case("quoted-separator", "structure", _text("log.csv", 'u,i\n"a,b",1\n"c",2\n'), users=["a,b", "c"], items=[1, 2]),
    Case("row-longer-than-header", "structure", _text("log.csv", "u,i\n1,2,3\n4,5\n"), error=r"cannot parse"),
    Case("row-shorter-than-header", "structure", _text("log.csv", "u,i,r\n1,2\n"), error=r"cannot parse"),
    Case("spaces-in-header", "structure", _text("log.csv", " u , i \n1,2\n"), users=[1], items=[2]),
    Case("missing-column", "structure", _text("log.csv", "user,i\n1,2\n"), error=r"missing column\(s\) \['u'\]"),
    Case("semicolon-sep", "structure", _text("log.txt", "u;i\n1;2\n"), users=[1], items=[2], kwargs={"sep": ";"}),
    Case(
        "multichar-sep",
        "structure",
        _text("log.dat", "u::i\n1::2\n3::4\n"),
        users=[1, 3],
        items=[2, 4],
        kwargs={"sep": "::"},
    ),
    Case(
        "same-user-and-item-column",
        "structure",
        _text("log.csv", "u,i\n1,2\n"),
        error=r"item_col",
        kwargs={"item_col": "u"},
    ),
    # -- GroupLens layout --------------------------------------------------------------------------
    Case(
        "genre-index-not-int",
        "grouplens",
        _grouplens(genre="a|x\n"),
        error=r"u\.genre.*genre indices",
        loader="grouplens",
    ),
    Case(
        "genre-one-column", "grouplens", _grouplens(genre="a\nb\n"), error=r"u\.genre.*name\|index", loader="grouplens"
    ),
    Case(
        "genre-gap",
        "grouplens",
        _grouplens(genre="".join(f"g{j}|{2 * j}\n" for j in range(GENRES))),
        error=r"u\.genre.*0\.\.18",
        loader="grouplens",
    ),
    Case(
        "genre-count-mismatch",
        "grouplens",
        _grouplens(genre="a|0\nb|1\n"),
        error=r"u\.item.*19 genre flag",
        loader="grouplens",
    ),
    Case("genre-ok", "grouplens", _grouplens(genre=_GENRE_OK), users=[1, 2], items=[10, 20], loader="grouplens"),
    Case(
        "flag-not-0-1",
        "grouplens",
        _grouplens(item="10|A|||x|" + "|".join(["2"] + ["0"] * 18) + "\n"),
        error=r"u\.item.*0 or 1",
        loader="grouplens",
    ),
    Case(
        "u.data-utf-16",
        "grouplens",
        _grouplens(data_bytes="1\t10\t5\t100\n".encode("utf-16")),
        error=r"u\.data.*NUL bytes",
        loader="grouplens",
    ),
    Case(
        "u.item-text-ids-vs-int-log",
        "grouplens",
        _grouplens(item=f"007|A|||x|{'|'.join(['0'] * GENRES)}\n"),
        error=r"u\.item.*text",
        loader="grouplens",
    ),
    Case(
        "u.data-id-beyond-int64",
        "grouplens",
        _grouplens(data=f"{U64_MAX}\t10\t5\t100\n"),
        users=[str(U64_MAX)],
        items=[10],
        loader="grouplens",
    ),
]


def _load(case: Case, path: Path):
    if case.loader == "grouplens":
        return load_grouplens(path)
    kwargs = {"user_col": "u", "item_col": "i", **case.kwargs}
    return load_interactions(path, **kwargs)


def _error_file(case: Case, path: Path) -> str:
    """The file an error must name: GroupLens errors name the file inside the folder."""
    if case.loader != "grouplens":
        return str(path)
    for name in ("u.genre", "u.item", "u.data"):
        if name in (case.error or ""):
            return str(path / name)
    return str(path)


def outcome(case: Case, tmp: Path, strict: bool = True) -> tuple[str, str]:
    """Run a case: ('correct' | 'clean error' | 'crash' | 'wrong result', detail).

    ``strict=False`` counts any ValueError naming the file as a clean error whatever its wording
    (how the before/after table was counted); the tests also require the expected wording."""
    path = case.write(tmp)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            d = _load(case, path)
    except ValueError as exc:
        msg = str(exc)
        if case.error is None:
            return "wrong result", f"unexpected ValueError: {msg}"
        import re

        needs_file = not case.error.startswith(("encoding:", "item_col"))
        if needs_file and _error_file(case, path) not in msg:
            return "crash", f"error does not name the file: {msg}"
        if strict and not re.search(case.error, msg):
            return "wrong result", f"error {msg!r} does not match {case.error!r}"
        return "clean error", msg
    except Exception as exc:  # noqa: BLE001 - classifying, not handling
        return "crash", f"{type(exc).__name__}: {exc}"
    if case.error is not None:
        return "wrong result", "loaded although the input is bad"
    users = d.user_map.decode(d.users).tolist()
    items = d.item_map.decode(d.items).tolist()
    if users != case.users or items != case.items:
        return "wrong result", f"users {users}, items {items}"
    # Exact types too: 5 and "5" are different ids.
    if [type(v) for v in users] != [type(v) for v in case.users]:
        return "wrong result", f"id types {[type(v).__name__ for v in users]}"
    return "correct", ""


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_loader_case(case, tmp_path):
    kind, detail = outcome(case, tmp_path)
    expected = "clean error" if case.error is not None else "correct"
    assert kind == expected, detail


def test_case_table_covers_each_category():
    # Guards the table itself: every category has both inputs that must load and inputs that must fail.
    cats = {c.category for c in CASES}
    assert cats == {"ids", "parquet", "encoding", "structure", "grouplens"}
    for cat in cats:
        assert any(c.error for c in CASES if c.category == cat)
        assert any(c.error is None for c in CASES if c.category == cat)


def test_csv_and_parquet_give_the_same_ids(tmp_path):
    # One log, two formats: the id policy lives in one place, so the maps must be equal.
    import pandas as pd

    frame = pd.DataFrame({"u": ["007", "7", "x", "007"], "i": [U64_MAX, 1, 2, 1]})
    frame.to_csv(tmp_path / "log.csv", index=False)
    pq.write_table(
        pa.table({"u": pa.array(frame["u"]), "i": pa.array(frame["i"], pa.uint64())}), tmp_path / "log.parquet"
    )
    a = load_interactions(tmp_path / "log.csv", user_col="u", item_col="i")
    b = load_interactions(tmp_path / "log.parquet", user_col="u", item_col="i")
    assert a.user_map == b.user_map and a.item_map == b.item_map
    assert a.user_map.decode(a.users).tolist() == ["007", "7", "x", "007"]
    assert a.item_map.decode(a.items).tolist() == [str(U64_MAX), "1", "2", "1"]


def test_random_integer_ids_round_trip(tmp_path, rng):
    # Random ids over the whole int64/uint64 range, written as text: every one comes back exactly,
    # and two different ids never share a code (the bug: wrapping merged users).
    ids = [int(v) for v in rng.integers(-(2**63), 2**63 - 1, size=40, dtype=np.int64)]
    ids += [int(v) for v in rng.integers(2**63, U64_MAX, size=40, dtype=np.uint64, endpoint=True)]
    ids += [2**63 - 1, -(2**63), 2**63, U64_MAX, U64_MAX + 1, 10**30]
    path = tmp_path / "log.csv"
    path.write_text("u,i\n" + "".join(f"{v},{j}\n" for j, v in enumerate(ids)))
    d = load_interactions(path, user_col="u", item_col="i")
    assert d.user_map.decode(d.users).tolist() == [str(v) for v in ids]
    assert d.n_users == len(set(ids))
    small = [v for v in ids if -(2**63) <= v < 2**63]
    path.write_text("u,i\n" + "".join(f"{v},{j}\n" for j, v in enumerate(small)))
    d = load_interactions(path, user_col="u", item_col="i")
    assert d.user_map.decode(d.users).tolist() == small and d.user_map.is_integer


def test_idmap_refuses_wrapping_ids():
    with pytest.raises(ValueError, match="exceed int64"):
        IdMap(np.array([U64_MAX, 1], dtype=np.uint64))
    with pytest.raises(ValueError, match="do not fit int64"):
        IdMap(np.array([2**64, 1], dtype=object))
    m = IdMap([-1, -(2**63), 5])
    # uint64 max would wrap onto -1, 1e20 onto INT64_MIN: both are unknown ids, not matches.
    with pytest.raises(ValueError, match="unknown id"):
        m.encode(np.array([U64_MAX], dtype=np.uint64))
    with pytest.raises(ValueError, match="unknown id"):
        m.encode(np.array([1e20]))
    assert m.encode(np.array([-1.0, 5.0])).tolist() == [1, 2]
    with pytest.raises(ValueError, match="not int64"):
        IdMap.from_json('{"kind": "int", "ids": [18446744073709551615]}')


# ---------------------------------------------------------------------------------------------
# embedding cache (point 13)
# ---------------------------------------------------------------------------------------------
from mmrec_fast.encoders import cache as cache_mod  # noqa: E402
from mmrec_fast.encoders.cache import EmbeddingCache  # noqa: E402

SETTINGS = {"name": "adversarial", "v": 1}


def _keys(n, salt=""):
    import hashlib

    return [hashlib.sha256(f"{salt}{j}".encode()).hexdigest() for j in range(n)]


def _make_unwritable(monkeypatch, root: Path):
    """A read-only folder. chmod does not stop root (this VM's tests run as root): then the write
    call itself fails the way a read-only mount makes it fail."""
    if os.geteuid() != 0:
        root.chmod(0o555)
        return
    real = cache_mod.tempfile.mkstemp

    def refuse(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(root.resolve()):
            raise PermissionError(13, "Read-only file system", str(dir))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(cache_mod.tempfile, "mkstemp", refuse)


def test_read_only_cache_returns_vectors_and_warns_once(tmp_path, monkeypatch):
    from mmrec_fast.encoders.bow import BagOfWordsEncoder

    root = tmp_path / "cache"
    root.mkdir()
    texts = [f"item number {j} with words {j % 7}" for j in range(300)]
    expected = BagOfWordsEncoder(64, cache_dir=None).encode(texts)
    _make_unwritable(monkeypatch, root)
    monkeypatch.setattr(cache_mod, "_WARNED_READONLY", set())
    with pytest.warns(RuntimeWarning, match="cannot write") as record:
        enc = BagOfWordsEncoder(64, cache_dir=root)
        enc.batch_size = 50  # several chunks: still one warning
        got = enc.encode(texts)
        again = BagOfWordsEncoder(64, cache_dir=root).encode(texts)
    assert sum("cannot write" in str(w.message) for w in record) == 1
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(again, expected)
    assert not list(root.rglob("shard-*"))


def test_nan_shard_is_damaged_and_recomputed(tmp_path):
    cache = EmbeddingCache(tmp_path, SETTINGS, dim=3)
    keys = _keys(4)
    vecs = np.arange(12, dtype=np.float32).reshape(4, 3)
    bad = vecs.copy()
    bad[2, 1] = np.nan
    np.savez(cache.path / "shard-00000000000000000001-aaaaaaaaaaaa.npz", keys=np.array(keys, dtype="U64"), vectors=bad)
    fresh = EmbeddingCache(tmp_path, SETTINGS, dim=3)
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        assert fresh.get_many(keys) == [None] * 4
    # Recomputed rows are stored and served; a NaN row handed to put_many is never stored.
    with_nan = vecs.copy()
    with_nan[0] = np.inf
    fresh.put_many(keys, with_nan)
    out = EmbeddingCache(tmp_path, SETTINGS, dim=3)
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):  # the old damaged shard, again
        rows = out.get_many(keys)
    assert rows[0] is None
    np.testing.assert_array_equal(np.stack(rows[1:]), vecs[1:])


@pytest.mark.parametrize("how", ["file", "under-a-file"])
def test_file_as_cache_dir(tmp_path, how):
    f = tmp_path / "notes.txt"
    f.write_text("keep me")
    target = f if how == "file" else f / "sub"
    with pytest.raises(ValueError, match=r"cache_dir: .*notes\.txt.* is not a directory"):
        EmbeddingCache(target, SETTINGS, dim=3)
    assert f.read_text() == "keep me"


# ---------------------------------------------------------------------------------------------
# backend registry: an interrupted import is not an absence (point 14)
# ---------------------------------------------------------------------------------------------
import mmrec_fast.backends as registry  # noqa: E402


@pytest.fixture
def fresh_registry(monkeypatch, tmp_path):
    """The registry with empty memos, and a fake 'torch' backend module on sys.path whose first
    import is interrupted (after a helper submodule of it finished importing)."""
    for attr in ("_loaded", "_failures", "_last_error"):
        monkeypatch.setattr(registry, attr, {})
    monkeypatch.setattr(registry, "_interrupted_once", set())
    pkg = tmp_path / "fakebk"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "helper.py").write_text("VALUE = 1\n")
    (pkg / "backend.py").write_text(
        textwrap.dedent("""
        import builtins
        from . import helper
        if getattr(builtins, "_fakebk_interrupt", 0):
            builtins._fakebk_interrupt -= 1
            raise KeyboardInterrupt
        BACKEND = "fake"
        def describe():
            return "fake backend"
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(registry._MODULES, "torch", "fakebk.backend")
    yield registry
    for mod in [m for m in sys.modules if m == "fakebk" or m.startswith("fakebk.")]:
        del sys.modules[mod]


def test_ctrl_c_during_import_is_not_memoised(fresh_registry, monkeypatch):
    import builtins

    monkeypatch.setattr(builtins, "_fakebk_interrupt", 1, raising=False)
    with pytest.raises(KeyboardInterrupt):
        fresh_registry._load("torch")
    assert "torch" not in fresh_registry._failures and "torch" not in fresh_registry._loaded
    assert "fakebk.helper" not in sys.modules  # the half-imported package was dropped
    status = fresh_registry.available_backends()["torch"]
    assert status.available and status.detail == "fake backend"
    assert fresh_registry.get_backend("torch") == "fake"


def test_ctrl_c_wrapped_in_import_error_is_not_memoised(fresh_registry, monkeypatch):
    # Some packages catch everything during their import and re-raise an ImportError: the chained
    # KeyboardInterrupt still decides.
    real = registry.importlib.import_module
    calls = []

    def importer(name, *args):
        calls.append(name)
        if len(calls) == 1:
            try:
                raise KeyboardInterrupt
            except KeyboardInterrupt as exc:
                raise ImportError("torch could not be loaded") from exc
        return real(name, *args)

    monkeypatch.setattr(registry.importlib, "import_module", importer)
    with pytest.raises(KeyboardInterrupt):
        fresh_registry._load("torch")
    assert "torch" not in fresh_registry._failures
    assert fresh_registry._load("torch") is not None and len(calls) == 2


def test_failure_after_interrupt_is_retried_but_real_failure_is_memoised(fresh_registry, monkeypatch):
    calls = []

    real = registry.importlib.import_module

    def importer(name, *args):
        if name != "fakebk.backend":
            return real(name, *args)
        calls.append(name)
        raise KeyboardInterrupt if len(calls) == 1 else RuntimeError("debris of the first attempt")

    monkeypatch.setattr(registry.importlib, "import_module", importer)
    with pytest.raises(KeyboardInterrupt):
        fresh_registry._load("torch")
    assert fresh_registry._load("torch") is None
    assert fresh_registry._load("torch") is None
    assert "debris" in fresh_registry._reason("torch") and "interrupted" in fresh_registry._reason("torch")
    with pytest.raises(ValueError, match="interrupted import"):
        fresh_registry.get_backend("torch")
    assert "torch" not in fresh_registry._failures and len(calls) == 4  # retried each time
    # Control: a backend never interrupted keeps the memo (one import attempt, then none).
    monkeypatch.setitem(registry._MODULES, "numba", "fakebk.backend")
    fresh_registry._load("numba")
    fresh_registry._load("numba")
    assert "numba" in fresh_registry._failures and len(calls) == 5
