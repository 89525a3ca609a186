"""Readers for interaction logs: MovieLens-100K (RecBole atomic files or the GroupLens layout) and
generic CSV / TSV / Parquet logs with named columns.

Every reader returns an :class:`~mmrec_fast.data.Interactions` whose id maps are sorted (see
:class:`~mmrec_fast.data.IdMap`) and cover the ids of the log *and* of its side files (an item
described in the item file but never rated still gets a code, so content-based models can rank it).

Bad input raises ``ValueError`` naming the file and the column: a missing file or column, an empty
file, missing ids, non-numeric ratings, and -- by default -- repeated (user, item) rows.

The MovieLens data are not redistributable (GroupLens' terms); nothing here copies them anywhere.
"""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd

from ._ids import id_values
from ._textio import COMPRESSION, header_fields, read_table, sniff
from .idmap import IdMap
from .interactions import Interactions

__all__ = ["load_movielens_100k", "load_grouplens", "load_interactions", "recbole_ml100k_dir"]

_DUPLICATE_POLICIES = ("error", "first", "last", "keep")

#: GroupLens' genre order of the 19 flag columns of ``u.item`` (used when ``u.genre`` is absent).
ML100K_GENRES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def _time_values(col: pd.Series, source: str, name: str) -> np.ndarray:
    """Timestamps as int64: numbers are taken as they are (floored), date strings become epoch seconds."""
    if col.isna().any():
        raise ValueError(f"{source}: column {name!r} has {int(col.isna().sum())} missing timestamp(s)")
    if not pd.api.types.is_datetime64_any_dtype(col):
        num = pd.to_numeric(col, errors="coerce")
        if not num.isna().any():
            return np.floor(num.to_numpy(dtype=np.float64)).astype(np.int64)
    try:
        # format="mixed": logs mix "2020-01-01" and "2020-01-01T10:00:00Z"; naive times count as UTC.
        parsed = pd.to_datetime(col, utc=True, format="mixed")
    except (ValueError, TypeError) as exc:
        bad = col[pd.to_datetime(col, utc=True, format="mixed", errors="coerce").isna()]
        raise ValueError(
            f"{source}: column {name!r} holds values that are neither numbers nor "
            f"dates (e.g. {bad.iloc[0] if len(bad) else col.iloc[0]!r})"
        ) from exc
    # Whole seconds since the epoch, whatever the datetime resolution pandas picked.
    return ((parsed - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(dtype=np.int64)


def _rating_values(col: pd.Series, source: str, name: str) -> np.ndarray:
    num = pd.to_numeric(col, errors="coerce")
    bad = num.isna() | ~np.isfinite(num.astype(np.float64))
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ValueError(
            f"{source}: column {name!r} has {int(bad.sum())} missing or non-numeric "
            f"rating(s) (first at data row {first}: {col.iloc[first]!r})"
        )
    return num.to_numpy(dtype=np.float32)


def _apply_duplicates(users, items, policy: str, source: str, user_col: str, item_col: str) -> np.ndarray | None:
    """Row selection implementing the duplicate policy (None: keep every row)."""
    if policy == "keep":
        return None
    frame = pd.DataFrame({"u": users, "i": items})
    dup = frame.duplicated(keep=False if policy == "error" else policy)
    if not dup.any():
        return None
    if policy == "error":
        pairs = frame[dup].drop_duplicates().head(3)
        shown = ", ".join(f"({u!r}, {i!r})" for u, i in zip(pairs["u"], pairs["i"]))
        n_extra = int(frame.duplicated().sum())
        raise ValueError(
            f"{source}: {n_extra} repeated ({user_col}, {item_col}) row(s), e.g. {shown}; "
            f"pass duplicates='first', 'last' (file order) or 'keep'"
        )
    return ~dup.to_numpy()


def _build(
    frame_ids,
    *,
    ratings,
    timestamps,
    source,
    duplicates,
    user_col="user",
    item_col="item",
    item_features=None,
    user_features=None,
) -> Interactions:
    """Encode raw ids against maps that also cover the side files, apply the duplicate policy."""
    if duplicates not in _DUPLICATE_POLICIES:
        raise ValueError(f"duplicates: expected one of {_DUPLICATE_POLICIES}, got {duplicates!r}")
    users_raw, items_raw = frame_ids
    keep = _apply_duplicates(users_raw, items_raw, duplicates, source, user_col, item_col)
    if keep is not None:
        users_raw, items_raw = users_raw[keep], items_raw[keep]
        ratings = None if ratings is None else ratings[keep]
        timestamps = None if timestamps is None else timestamps[keep]

    def union(raw, feats, what):
        if feats is None or len(feats) == 0:
            return raw
        fidx = np.asarray(feats.index.to_numpy())
        if (fidx.dtype.kind in "iu") != (np.asarray(raw).dtype.kind in "iu") and len(raw):
            # Integer ids in one file and text ids in the other ("7" vs "007", or an id beyond
            # int64): which ids are the same is ambiguous, and dropping the side file would be silent.
            kinds = {True: "integer", False: "text"}
            raise ValueError(
                f"{feats.attrs.get('source', what + ' file')}: {what} ids are "
                f"{kinds[fidx.dtype.kind in 'iu']} but {source} has "
                f"{kinds[np.asarray(raw).dtype.kind in 'iu']} {what} ids"
            )
        return np.concatenate([np.asarray(raw, dtype=fidx.dtype if fidx.dtype.kind in "iu" else object), fidx])

    user_map = IdMap(union(users_raw, user_features, "user"), name="user")
    item_map = IdMap(union(items_raw, item_features, "item"), name="item")

    def recode(feats, idmap):
        if feats is None:
            return None
        feats = feats[~feats.index.duplicated(keep="first")]
        feats = feats.copy()
        feats.attrs.pop("source", None)
        feats.index = pd.Index(idmap.encode(feats.index.to_numpy()), name="code")
        return feats.sort_index()

    return Interactions(
        users=user_map.encode(users_raw),
        items=item_map.encode(items_raw),
        ratings=ratings,
        timestamps=timestamps,
        user_map=user_map,
        item_map=item_map,
        item_features=recode(item_features, item_map),
        user_features=recode(user_features, user_map),
        source=source,
    )


def _read_table(
    path: Path, *, sep, header="infer", names=None, encoding="utf-8", dtype=None, quote_none: bool = False
) -> pd.DataFrame:
    """A whole delimited file; every failure (encoding, parse, ragged rows) names ``path``."""
    sniff(path, encoding)
    return read_table(
        path,
        sep=sep,
        header=header,
        names=names,
        encoding=encoding,
        dtype=dtype,
        engine="c" if sep and len(sep) == 1 else "python",
        # A row with more fields than the header is an error, never an index column.
        index_col=False,
        # MovieLens titles hold bare quote characters: read them literally.
        quoting=csv.QUOTE_NONE if quote_none else csv.QUOTE_MINIMAL,
    )


def _split_tokens(s) -> list:
    return [] if pd.isna(s) or s == "" else str(s).split()


# ---------------------------------------------------------------------------------------------
# MovieLens-100K
# ---------------------------------------------------------------------------------------------
def recbole_ml100k_dir() -> Path:
    """The folder of the ML-100K atomic files inside the installed ``recbole`` package.

    Found without importing recbole (its import pulls in torch and more).
    """
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "path: None means the copy of MovieLens-100K shipped inside the 'recbole' "
            "package, which is not installed; install it with "
            "`pip install --no-deps recbole==1.2.1`, or pass path= to a directory "
            "holding ml-100k.inter (RecBole atomic files) or u.data (GroupLens layout)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / "ml-100k"
    if not (folder / "ml-100k.inter").is_file():
        raise ValueError(
            f"path: recbole is installed but {folder / 'ml-100k.inter'} is missing; "
            f"pass path= to a directory with the MovieLens-100K files"
        )
    return folder


def _read_atomic(path: Path) -> pd.DataFrame:
    """A RecBole atomic file: tab-separated, header ``name:type``; columns renamed to ``name``."""
    df = _read_table(path, sep="\t", dtype=str, encoding="utf-8", quote_none=True)
    df.columns = [str(c).split(":", 1)[0] for c in df.columns]
    return df


def load_movielens_100k(path=None, *, duplicates: str = "error") -> Interactions:
    """MovieLens-100K: 100,000 ratings (1-5) by 943 users of 1,682 movies, with timestamps.

    Parameters
    ----------
    path : str or Path, optional
        ``None``: the RecBole atomic files shipped inside the installed ``recbole`` package
        (``recbole/dataset_example/ml-100k/``). A directory with ``ml-100k.inter`` (and optionally
        ``ml-100k.item`` / ``ml-100k.user``), or with GroupLens' ``u.data`` (read by
        :func:`load_grouplens`).
    duplicates : {"error", "first", "last", "keep"}
        Policy for repeated (user, item) rows (ML-100K has none).

    Returns
    -------
    Interactions
        ``ratings`` float32 1..5, ``timestamps`` int64 Unix seconds; ``item_features`` with
        ``title`` (str), ``year`` (Int64, <NA> where unknown) and ``genres`` (list of str);
        ``user_features`` with ``age`` (int), ``gender``, ``occupation``, ``zip_code``.
    """
    if path is None:
        folder = recbole_ml100k_dir()
    else:
        folder = Path(path)
        if not folder.is_dir():
            raise ValueError(f"path: {folder} is not a directory")
        if not (folder / "ml-100k.inter").is_file():
            if (folder / "u.data").is_file():
                return load_grouplens(folder, duplicates=duplicates)
            raise ValueError(
                f"path: {folder} holds neither ml-100k.inter (RecBole atomic files) nor u.data (GroupLens layout)"
            )
    inter_path = folder / "ml-100k.inter"
    inter = _read_atomic(inter_path)
    for col in ("user_id", "item_id", "rating", "timestamp"):
        if col not in inter.columns:
            raise ValueError(f"{inter_path}: missing column {col!r} (found {list(inter.columns)})")
    if len(inter) == 0:
        raise ValueError(f"{inter_path}: no interaction rows")
    src = str(inter_path)
    users = id_values(inter["user_id"], src, "user_id")
    items = id_values(inter["item_id"], src, "item_id")

    item_feats = None
    item_path = folder / "ml-100k.item"
    if item_path.is_file():
        it = _read_atomic(item_path)
        if "item_id" not in it.columns:
            raise ValueError(f"{item_path}: missing column 'item_id' (found {list(it.columns)})")
        item_feats = pd.DataFrame(
            {
                "title": it.get("movie_title", pd.Series([pd.NA] * len(it))).to_numpy(),
                "year": pd.to_numeric(it.get("release_year", pd.Series([None] * len(it))), errors="coerce")
                .astype("Int64")
                .array,
                "genres": [_split_tokens(g) for g in it.get("class", pd.Series([""] * len(it)))],
            },
            index=pd.Index(id_values(it["item_id"], str(item_path), "item_id"), name="item_id"),
        )
        item_feats.attrs["source"] = str(item_path)

    user_feats = None
    user_path = folder / "ml-100k.user"
    if user_path.is_file():
        us = _read_atomic(user_path)
        if "user_id" not in us.columns:
            raise ValueError(f"{user_path}: missing column 'user_id' (found {list(us.columns)})")
        cols = {c: us[c].to_numpy() for c in ("gender", "occupation", "zip_code") if c in us.columns}
        if "age" in us.columns:
            cols = {"age": pd.to_numeric(us["age"], errors="coerce").astype("Int64").array, **cols}
        user_feats = pd.DataFrame(
            cols, index=pd.Index(id_values(us["user_id"], str(user_path), "user_id"), name="user_id")
        )
        user_feats.attrs["source"] = str(user_path)

    return _build(
        (users, items),
        ratings=_rating_values(inter["rating"], src, "rating"),
        timestamps=_time_values(inter["timestamp"], src, "timestamp"),
        source=src,
        duplicates=duplicates,
        user_col="user_id",
        item_col="item_id",
        item_features=item_feats,
        user_features=user_feats,
    )


def _read_genres(path: Path) -> list:
    """``u.genre``: ``name|index`` lines; the indices must be exactly 0..n-1 (they name flag columns)."""
    g = _read_table(path, sep="|", header=None, dtype=str, quote_none=True).dropna(how="all")
    if g.shape[1] < 2 or g[[0, 1]].isna().any().any():
        raise ValueError(f"{path}: expected 'name|index' lines")
    index = pd.to_numeric(g[1].str.strip(), errors="coerce")
    if index.isna().any() or sorted(index.tolist()) != list(range(len(g))):
        raise ValueError(
            f"{path}: genre indices must be the integers 0..{len(g) - 1}, each once; got {g[1].tolist()[:25]}"
        )
    return [name for name, _ in sorted(zip(g[0].str.strip(), index.astype(int)), key=lambda t: t[1])]


_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


def load_grouplens(directory, *, duplicates: str = "error") -> Interactions:
    """MovieLens-100K in GroupLens' original layout: ``u.data`` (+ ``u.item``, ``u.user``, ``u.genre``).

    ``u.data``: tab-separated ``user item rating timestamp`` without a header. ``u.item``:
    ``|``-separated, Latin-1, ``id|title (year)|release date|video date|IMDb URL|19 genre flags``.
    ``u.user``: ``id|age|gender|occupation|zip``. The title's trailing ``(year)`` is split off into
    ``year`` (falling back to the release date's year), so features match :func:`load_movielens_100k`.

    Parameters
    ----------
    directory : str or Path
        Folder holding at least ``u.data``.
    duplicates : {"error", "first", "last", "keep"}
        Policy for repeated (user, item) rows.
    """
    folder = Path(directory)
    if not folder.is_dir():
        raise ValueError(f"directory: {folder} is not a directory")
    data_path = folder / "u.data"
    if not data_path.is_file():
        raise ValueError(f"directory: {folder} has no u.data (GroupLens MovieLens-100K layout)")
    df = _read_table(data_path, sep="\t", header=None, dtype=str, quote_none=True)
    if df.shape[1] < 4:
        raise ValueError(
            f"{data_path}: expected 4 tab-separated columns (user item rating timestamp), found {df.shape[1]}"
        )
    src = str(data_path)
    users = id_values(df[0], src, "user (column 1)")
    items = id_values(df[1], src, "item (column 2)")
    ratings = _rating_values(df[2], src, "rating (column 3)")
    times = _time_values(df[3], src, "timestamp (column 4)")

    item_feats = None
    item_path = folder / "u.item"
    if item_path.is_file():
        it = _read_table(item_path, sep="|", header=None, encoding="latin-1", dtype=str, quote_none=True)
        if it.shape[1] < 5:
            raise ValueError(
                f"{item_path}: expected id|title|release date|video date|URL|genre flags, found {it.shape[1]} columns"
            )
        genre_names = list(ML100K_GENRES)
        genre_path = folder / "u.genre"
        if genre_path.is_file() and genre_path.stat().st_size:
            genre_names = _read_genres(genre_path)
        n_flags = it.shape[1] - 5
        if n_flags and n_flags != len(genre_names):
            raise ValueError(
                f"{item_path}: {n_flags} genre flag columns, but "
                f"{genre_path if genre_path.is_file() else 'the ML-100K genre list'} "
                f"names {len(genre_names)} genres"
            )
        raw_flags = it.iloc[:, 5:].fillna("0").to_numpy()
        bad = ~np.isin(raw_flags, ["0", "1"])
        if bad.any():
            row, col = (int(v[0]) for v in np.nonzero(bad))
            raise ValueError(
                f"{item_path}: genre flags must be 0 or 1, got {raw_flags[row, col]!r} "
                f"(line {row + 1}, column {col + 6})"
            )
        flags = raw_flags == "1"
        titles, years = [], []
        for title, date in zip(it[1].fillna(""), it[2].fillna("")):
            m = _TITLE_YEAR.match(title)
            titles.append(m.group(1) if m else title)
            year = m.group(2) if m else (date[-4:] if re.search(r"\d{4}$", date) else None)
            years.append(int(year) if year else None)
        item_feats = pd.DataFrame(
            {
                "title": titles,
                "year": pd.array(years, dtype="Int64"),
                "genres": [[genre_names[j] for j in np.flatnonzero(row)] for row in flags],
            },
            index=pd.Index(id_values(it[0], str(item_path), "item id (column 1)"), name="item_id"),
        )
        item_feats.attrs["source"] = str(item_path)

    user_feats = None
    user_path = folder / "u.user"
    if user_path.is_file():
        us = _read_table(user_path, sep="|", header=None, dtype=str, quote_none=True)
        if us.shape[1] < 5:
            raise ValueError(f"{user_path}: expected id|age|gender|occupation|zip, found {us.shape[1]} columns")
        user_feats = pd.DataFrame(
            {
                "age": pd.to_numeric(us[1], errors="coerce").astype("Int64").array,
                "gender": us[2].to_numpy(),
                "occupation": us[3].to_numpy(),
                "zip_code": us[4].to_numpy(),
            },
            index=pd.Index(id_values(us[0], str(user_path), "user id (column 1)"), name="user_id"),
        )
        user_feats.attrs["source"] = str(user_path)

    return _build(
        (users, items),
        ratings=ratings,
        timestamps=times,
        source=src,
        duplicates=duplicates,
        user_col="user",
        item_col="item",
        item_features=item_feats,
        user_features=user_feats,
    )


# ---------------------------------------------------------------------------------------------
# generic logs
# ---------------------------------------------------------------------------------------------
_EXT_SEP = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


def load_interactions(
    path,
    *,
    user_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
    sep: str | None = None,
    duplicates: str = "error",
    encoding: str = "utf-8",
) -> Interactions:
    """A generic interaction log with a header row (CSV / TSV) or a Parquet file.

    Parameters
    ----------
    path : str or Path
        The file. Format by extension: ``.parquet`` / ``.pq`` -> Parquet; ``.csv`` -> ``,``;
        ``.tsv`` / ``.tab`` -> tab; other extensions (``.txt``, ``.dat``) need ``sep``.
        A compression suffix (``.csv.gz`` ...) is allowed for text files.
    user_col, item_col : str
        Columns with the raw user and item ids. Ids are exact: a column of integers that fit int64
        gives int64 ids (sorted numerically); integers beyond int64 (``18446744073709551615``,
        Parquet ``uint64`` hashes) keep their decimal digits as text ids; float-written integers
        (``1.0``, ``1e3``) are integers; any other text (``007``, ``u1``) is a text id compared
        exactly after trimming surrounding whitespace. Missing ids, non-integer numbers (``1.5``)
        and columns of booleans, dates, lists or structs are a ``ValueError`` naming the file and
        the column.
    rating_col : str, optional
        Column with numeric ratings (explicit feedback). ``None``: implicit log, ``ratings`` is None.
    time_col : str, optional
        Column with timestamps: numbers (taken as they are, floored to int64) or date strings /
        datetimes (converted to Unix seconds).
    sep : str, optional
        Field separator for text files; overrides the extension's default.
    duplicates : {"error", "first", "last", "keep"}
        Repeated (user, item) rows: ``"error"`` (default: a log with repeats usually needs a decision
        -- sum play counts? keep the latest rating?), keep the ``"first"`` or ``"last"`` in file
        order, or ``"keep"`` them all (then :meth:`Interactions.to_csr` decides how to combine
        ratings). Note that Cornac's ``Dataset.build`` keeps the first and warns.
    encoding : str
        Text encoding of CSV / TSV files (a UTF-8 byte-order mark is skipped). Bytes that are not
        valid in it, NUL bytes (UTF-16 or binary data) and damaged compressed files are a
        ``ValueError`` naming the file.

    Returns
    -------
    Interactions
        No side features (``item_features`` / ``user_features`` are None).
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path: {p} is not a file")
    for name, val in (("user_col", user_col), ("item_col", item_col)):
        if not isinstance(val, str) or not val:
            raise ValueError(f"{name}: expected a column name, got {val!r}")
    for name, val in (("rating_col", rating_col), ("time_col", time_col)):
        if val is not None and (not isinstance(val, str) or not val):
            raise ValueError(f"{name}: expected a column name or None, got {val!r}")
    if user_col == item_col:
        raise ValueError(f"item_col: the same column as user_col ({user_col!r})")
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSION:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    wanted = list(dict.fromkeys(c for c in (user_col, item_col, rating_col, time_col) if c is not None))
    if ext in (".parquet", ".pq"):
        df = _read_parquet_columns(p, wanted)
    else:
        if sep is None:
            if ext not in _EXT_SEP:
                raise ValueError(
                    f"sep: cannot tell the separator of {p} from its extension "
                    f"{ext or '(none)'!r}; pass sep= (or use .csv/.tsv/.parquet)"
                )
            sep = _EXT_SEP[ext]
        if not isinstance(sep, str) or not sep:
            raise ValueError(f"sep: expected a non-empty string, got {sep!r}")
        df = _read_log_text(p, wanted, id_cols=(user_col, item_col), sep=sep, encoding=encoding)
    if len(df) == 0:
        raise ValueError(f"{p}: no interaction rows (only a header)")
    src = str(p)
    users = id_values(df[user_col], src, user_col)
    items = id_values(df[item_col], src, item_col)
    ratings = None if rating_col is None else _rating_values(df[rating_col], src, rating_col)
    times = None if time_col is None else _time_values(df[time_col], src, time_col)
    return _build(
        (users, items),
        ratings=ratings,
        timestamps=times,
        source=src,
        duplicates=duplicates,
        user_col=user_col,
        item_col=item_col,
    )


def _read_log_text(p: Path, wanted: list, *, id_cols, sep: str, encoding: str) -> pd.DataFrame:
    """The wanted columns of a delimited log; id columns as text, so no id is rounded or re-spelled.

    pandas' own type guess would read ``18446744073709551615`` as uint64 beside ``-1`` as text,
    ``1e20`` as a float and ``007`` as 7 (merging it with ``7``): ids go to :func:`id_values` as
    the characters of the file instead.
    """
    sniff(p, encoding)
    raw = header_fields(p, sep=sep, encoding=encoding)
    fields = [f.strip() for f in raw]
    for col in wanted:
        count = fields.count(col)
        if count > 1:
            raise ValueError(
                f"{p}: column {col!r} appears {count} times in the header; which one holds the data is ambiguous"
            )
    missing = [c for c in wanted if c not in fields]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing} (found {fields}; separator {sep!r})")
    positions = [fields.index(c) for c in wanted]
    single = len(sep) == 1
    names = [raw[j] for j in positions]  # as pandas names them (wanted names are unique)
    df = read_table(
        p,
        sep=sep,
        header=0,
        encoding=encoding,
        usecols=names,
        dtype={raw[fields.index(c)]: str for c in id_cols},
        # The Arrow parser reads text columns several times faster than the C parser
        # (and refuses ragged rows); multi-character separators need the Python one.
        engine="pyarrow" if single else "python",
        **({} if single else {"index_col": False}),
    )
    df = df[names]
    df.columns = wanted
    return df


def _read_parquet_columns(p: Path, wanted: list) -> pd.DataFrame:
    """The wanted columns of a Parquet file (ids keep their Arrow type: uint64 stays uint64)."""
    if p.stat().st_size == 0:
        raise ValueError(f"{p}: the file is empty")
    from .._optional import require

    pq = require("pyarrow.parquet", extra="data", feature="reading Parquet logs")

    try:
        names = pq.read_schema(p).names
    except Exception as exc:
        raise ValueError(f"{p}: not a readable Parquet file ({exc})") from exc
    for col in wanted:
        if names.count(col) > 1:
            raise ValueError(
                f"{p}: column {col!r} appears {names.count(col)} times; which one holds the data is ambiguous"
            )
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ValueError(f"{p}: missing column(s) {missing} (found {names})")
    try:
        table = pq.read_table(p, columns=wanted)
    except Exception as exc:
        raise ValueError(f"{p}: not a readable Parquet file ({exc})") from exc
    # Arrow -> pandas without the nullable-int -> float64 detour: a uint64 column with a null would
    # otherwise round its ids through float64 (the null is reported as a missing id anyway).
    return pd.DataFrame({name: table.column(name).to_pandas() for name in wanted})
