"""Input checks and conversion to the kernels' canonical form.

Every public entry point validates here, before any output is allocated or any kernel runs, so bad
input raises a ``ValueError`` that names the offending argument and nothing is half-written.
"""

from __future__ import annotations

import functools
import numbers
import os

import numpy as np

__all__ = [
    "to_numpy",
    "as_float_matrix",
    "as_float_matrix_any",
    "check_k",
    "check_positive_int",
    "check_temperature",
    "check_score_range",
    "as_exclusion",
    "as_index_array",
    "as_item_filter",
    "item_mask",
    "check_bool",
]

FLOAT32_MAX = float(np.finfo(np.float32).max)
# Scores, and scores / temperature, must stay this far below float32's largest value so that the
# block maxima and exp-shifts can never overflow.
_SCORE_LIMIT = FLOAT32_MAX / 4
_LOG2E = 1.4426950408889634
_NO_IDS = np.zeros(0, dtype=np.int64)
_NO_IDS.flags.writeable = False
# Inputs up to this many elements take the one-reduction finiteness check (per-call cost of small queries).
_SMALL = 1 << 16


def to_numpy(x, name: str) -> np.ndarray:
    """Host NumPy view (or copy) of a NumPy array, torch tensor, CuPy array or DLPack/array-like object.

    A masked array is refused unless nothing is masked: its data under the mask (a NaN, a stale id) is
    what a kernel would read, so passing it through would give silently wrong answers.
    """
    if isinstance(x, np.ma.MaskedArray):
        if np.ma.getmask(x) is not np.ma.nomask and np.ma.getmaskarray(x).any():
            raise ValueError(
                f"{name}: masked arrays with masked entries are not supported; fill them "
                f"(x.filled(value)) or drop them first"
            )
        return np.asarray(x.data)
    if isinstance(x, np.ndarray):
        return x
    module = type(x).__module__.split(".")[0]
    try:
        if module == "torch":
            return x.detach().cpu().numpy()
        if module == "cupy" or hasattr(x, "__cuda_array_interface__"):
            return x.get()  # device array: the CPU backends need it on the host (one copy)
        if hasattr(x, "__dlpack__"):
            return np.from_dlpack(x)
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic containers
        raise ValueError(f"{name}: cannot convert {type(x).__name__} to an array ({exc})") from exc


def as_float_matrix(x, name: str, *, dim: int | None = None, dim_from: str = "") -> np.ndarray:
    """Validate a 2-D real matrix and return it as C-contiguous float32 (copied at most once).

    Parameters
    ----------
    x : array-like
        NumPy array, torch tensor, CuPy array or nested sequence.
    name : str
        Argument name used in error messages.
    dim : int, optional
        Required number of columns (the embedding dimension of the other operand).
    dim_from : str
        Name of the operand ``dim`` comes from, for the error message.
    """
    arr = to_numpy(x, name)
    if arr.dtype == object or arr.dtype.kind not in "fiu":
        raise ValueError(f"{name}: expected a real numeric array (float16/32/64 or integer), got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows x dimensions), got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise ValueError(f"{name}: embedding dimension must be at least 1, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(
            f"{name}: has {arr.shape[1]} dimensions but {dim_from} has {dim} (shapes must be (U, d) and (I, d))"
        )
    # min/max propagate NaN and expose inf: one pass each and no temporary as large as the input
    # (np.isfinite(arr).all() would allocate a U x d / I x d boolean array).
    # (Two checks, not one of min + max: that sum overflows for huge finite values.) A small input
    # first tries one sum: finite means no NaN / inf (an overflowing sum falls through to min/max).
    if (
        arr.dtype.kind == "f"
        and arr.size
        and not (arr.size <= _SMALL and np.isfinite(arr.sum()))
        and not (np.isfinite(arr.min()) and np.isfinite(arr.max()))
    ):
        bad = np.argwhere(~np.isfinite(arr))[0]
        kind = "NaN" if np.isnan(arr[tuple(bad)]) else "inf"
        raise ValueError(f"{name}: contains {kind} (first at row {bad[0]}, column {bad[1]}); all values must be finite")
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 4 and arr.size and max(-arr.min(), arr.max()) > FLOAT32_MAX:
        raise ValueError(f"{name}: values exceed the float32 range (|x| > {FLOAT32_MAX:.3g})")
    return np.ascontiguousarray(arr, dtype=np.float32)


def as_float_matrix_any(x, name: str, *, dim: int | None = None, dim_from: str = "", keep_half: bool = False):
    """Like :func:`as_float_matrix`, but torch tensors and CuPy arrays stay in their family and on their device.

    The checks (real dtype, rank 2, ``dim`` columns, all finite, float32 range) run where the data
    lives -- two reductions, no input-sized host copy -- and the result is C-contiguous float32 of the
    same family (half/bfloat16/integer inputs converted there; with ``keep_half``, float16 and bfloat16
    tensors/arrays keep their type for a tensor-core kernel). Anything else goes through
    :func:`as_float_matrix` and comes back as NumPy float32.
    """
    from . import _arrays

    fam = _arrays.family(x)
    if fam == "numpy":
        return as_float_matrix(x, name, dim=dim, dim_from=dim_from)
    if fam == "torch":
        import torch

        floating = x.is_floating_point()
        if x.is_complex() or x.dtype == torch.bool:
            raise ValueError(
                f"{name}: expected a real numeric tensor (float16/bfloat16/32/64 or integer), got dtype {x.dtype}"
            )
        x = x.detach()
        shape, ndim = tuple(x.shape), x.dim()
    else:
        floating = x.dtype.kind == "f"
        if x.dtype.kind not in "fiu":
            raise ValueError(f"{name}: expected a real numeric array (float16/32/64 or integer), got dtype {x.dtype}")
        shape, ndim = tuple(x.shape), x.ndim
    if ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (rows x dimensions), got shape {shape}")
    if shape[1] < 1:
        raise ValueError(f"{name}: embedding dimension must be at least 1, got shape {shape}")
    if dim is not None and shape[1] != dim:
        raise ValueError(
            f"{name}: has {shape[1]} dimensions but {dim_from} has {dim} (shapes must be (U, d) and (I, d))"
        )
    if floating and shape[0]:
        # Python floats (float64) of the two extremes: NaN propagates through min/max, inf shows.
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi)):
            if fam == "torch":
                first = (~x.isfinite()).nonzero()[0]
            else:
                import cupy

                first = cupy.argwhere(~cupy.isfinite(x))[0]
            bad = tuple(int(v) for v in _arrays.asnumpy(first))
            kind = "NaN" if np.isnan(float(x[bad])) else "inf"
            raise ValueError(
                f"{name}: contains {kind} (first at row {bad[0]}, column {bad[1]}); all values must be finite"
            )
        if max(-lo, hi) > FLOAT32_MAX:
            raise ValueError(f"{name}: values exceed the float32 range (|x| > {FLOAT32_MAX:.3g})")
    if fam == "torch":
        import torch

        if keep_half and x.dtype in (torch.float16, torch.bfloat16):
            return x.contiguous()
        return x.to(torch.float32).contiguous()
    import cupy

    if keep_half and x.dtype == cupy.float16:
        return cupy.ascontiguousarray(x)
    return cupy.ascontiguousarray(x, dtype=cupy.float32)


def check_positive_int(value, name: str) -> int:
    """``value`` must be an integer >= 1 (bools refused); returns it as int."""
    if type(value) is int and value >= 1:  # the common case, without the numbers.Integral ABC check
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: must be >= 1, got {value}")
    return int(value)


#: Bytes per result slot: int64 index + float32 score + float32 probability.
_SLOT_BYTES = 16


@functools.lru_cache(maxsize=1)
def _physical_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - non-POSIX
        return 1 << 40


def check_k(k, n_users: int = 1) -> int:
    """k must be an integer >= 1 whose (U, k) outputs fit in this machine's memory."""
    k = check_positive_int(k, "k")
    need = k * max(1, int(n_users)) * _SLOT_BYTES
    if need > _physical_memory():
        raise ValueError(
            f"k: {k:,} slots for {n_users:,} users need {need / 2**30:,.1f} GiB of output, more "
            f"than this machine's memory ({_physical_memory() / 2**30:,.1f} GiB); lists longer "
            "than the catalogue are padded, so k beyond the number of items only adds padding"
        )
    return k


def check_temperature(temperature) -> float:
    """temperature must be a finite real number > 0 (and >= ~4.2e-39, so log2(e) / temperature is a float32)."""
    if type(temperature) is float and 0.0 < temperature < float("inf") and _LOG2E / temperature <= FLOAT32_MAX:
        return temperature  # the common case, without the numbers.Real ABC check
    if isinstance(temperature, bool) or not isinstance(temperature, numbers.Real):
        raise ValueError(f"temperature: expected a positive number, got {temperature!r}")
    temperature = float(temperature)
    if not np.isfinite(temperature) or temperature <= 0:
        raise ValueError(f"temperature: must be finite and > 0, got {temperature}")
    # The kernels scale scores by log2(e) / temperature in float32: that factor must be finite.
    if _LOG2E / temperature > FLOAT32_MAX:
        raise ValueError(f"temperature: {temperature:g} is too small (log2(e) / temperature overflows float32)")
    return temperature


def max_row_norm(x: np.ndarray, chunk: int = 4096) -> float:
    """Largest Euclidean row norm, in float64, a few MB of temporaries at a time (any array family)."""
    if not isinstance(x, np.ndarray):
        from . import _arrays

        return _arrays.max_row_norm(x)
    best = 0.0
    for start in range(0, x.shape[0], chunk):
        block = x[start : start + chunk].astype(np.float64)
        best = max(best, float(np.sqrt(np.einsum("ij,ij->i", block, block).max(initial=0.0))))
    return best


def max_abs(x: np.ndarray) -> float:
    """Largest absolute value (0 for an empty array), without an |x|-sized temporary (any array family)."""
    if not isinstance(x, np.ndarray):
        from . import _arrays

        return _arrays.max_abs(x)
    if x.size <= _SMALL:  # one reduction (and a small temporary) beats two on a short query
        return float(np.abs(x).max()) if x.size else 0.0
    return float(max(-x.min(), x.max()))


def check_score_range(
    users: np.ndarray,
    items: np.ndarray,
    temperature: float,
    *,
    items_max_abs: float | None = None,
    items_max_norm: float | None = None,
) -> None:
    """Reject inputs whose float32 scores (or scores / temperature) could overflow.

    Every score obeys ``|u . v| <= d * max|u_k| * max|v_k|`` (cheap: one min/max pass) and, tighter,
    ``|u . v| <= max||u|| * max||v||`` (Cauchy-Schwarz, computed in float64 only when the cheap bound is
    not enough). Either bound below the limit guarantees every float32 score and every scaled score is
    finite, so no backend ever sees inf - inf. ``items_max_abs`` / ``items_max_norm`` are the items'
    precomputed statistics (then ``items`` is only used for its shape).
    """
    if users.shape[0] == 0 or items.shape[0] == 0:
        return
    if items_max_abs is None and items_max_norm is None:
        items_max_abs = max_abs(items)
    bound = np.inf
    if items_max_abs is not None:
        bound = users.shape[1] * max_abs(users) * items_max_abs
    if bound > _SCORE_LIMIT or bound / temperature > _SCORE_LIMIT:
        if items_max_norm is None:
            items_max_norm = max_row_norm(items)
        bound = min(bound, max_row_norm(users) * items_max_norm)
    if bound > _SCORE_LIMIT:
        raise ValueError(
            f"users, items: scores could overflow float32 (max|u| * max|v| = {bound:.3g} > "
            f"{_SCORE_LIMIT:.3g}); rescale the embeddings"
        )
    if bound / temperature > _SCORE_LIMIT:
        raise ValueError(
            f"temperature: {temperature:g} is too small for these scores "
            f"(max|score| / temperature could reach {bound / temperature:.3g}, beyond float32)"
        )


def as_index_array(x, name: str, upper: int, *, upper_name: str) -> np.ndarray:
    """Validate a 1-D array of integer ids in [0, upper) and return it as int64."""
    arr = to_numpy(x, name)
    if arr.dtype.kind not in "iu" or arr.dtype == bool:
        if arr.size == 0:
            arr = arr.astype(np.int64)
        else:
            raise ValueError(f"{name}: expected integer ids, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of ids, got shape {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= upper:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{name}: id {bad} out of range [0, {upper}) ({upper_name})")
    return arr


def as_exclusion(exclude, n_users: int, n_items: int, *, name: str = "exclude") -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``exclude`` to CSR (indptr, indices) with each row sorted and duplicate-free.

    Parameters
    ----------
    exclude : scipy.sparse matrix/array of shape (U, I), tuple (indptr, indices), list, or None
        Items removed from each user's catalogue (neither ranked nor counted in the normaliser).
        Explicitly stored entries count as excluded whatever their value. A list holds one sequence of
        item ids per user (``len == U``); only a tuple is read as ``(indptr, indices)``.
    n_users, n_items : int
        U and I of the call.
    name : str
        Argument name for error messages (``candidates`` takes the same forms).

    Returns
    -------
    indptr : ndarray of int64, shape (U + 1,)
    indices : ndarray of int64, shape (nnz,)
    """
    if exclude is None:
        return np.zeros(n_users + 1, dtype=np.int64), _NO_IDS
    if hasattr(exclude, "tocsr") and hasattr(exclude, "shape"):
        if tuple(exclude.shape) != (n_users, n_items):
            raise ValueError(
                f"{name}: sparse matrix has shape {tuple(exclude.shape)}, expected (U, I) = ({n_users}, {n_items})"
            )
        csr = exclude.tocsr()
        indptr, indices = csr.indptr, csr.indices
    elif isinstance(exclude, tuple) and len(exclude) == 2:
        indptr, indices = exclude
    elif isinstance(exclude, list):
        # A list is one id sequence per user -- never guessed to be (indptr, indices).
        if len(exclude) != n_users:
            raise ValueError(
                f"{name}: a list must hold one id sequence per user (U = {n_users}), "
                f"got {len(exclude)} entries; pass (indptr, indices) as a tuple"
            )
        id_rows = [to_numpy(row, f"{name}[{u}]") for u, row in enumerate(exclude)]
        for u, row in enumerate(id_rows):
            if row.ndim != 1:
                raise ValueError(f"{name}[{u}]: expected a 1-D sequence of item ids, got shape {row.shape}")
        indptr = np.zeros(n_users + 1, dtype=np.int64)
        np.cumsum([row.shape[0] for row in id_rows], out=indptr[1:])
        indices = (
            np.concatenate([row if row.size else row.astype(np.int64) for row in id_rows])
            if id_rows
            else np.zeros(0, dtype=np.int64)
        )
    else:
        raise ValueError(
            f"{name}: expected a scipy.sparse matrix of shape (U, I), a tuple (indptr, indices) "
            f"or a list of one id sequence per user, got {type(exclude).__name__}"
        )
    indptr = to_numpy(indptr, f"{name} indptr")
    indices = to_numpy(indices, f"{name} indices")
    if indptr.ndim != 1 or indptr.shape[0] != n_users + 1 or indptr.dtype.kind not in "iu":
        raise ValueError(
            f"{name}: indptr must be a 1-D integer array of length U + 1 = {n_users + 1}, "
            f"got shape {indptr.shape} dtype {indptr.dtype}"
        )
    indptr = indptr.astype(np.int64)
    indices = as_index_array(indices, name, n_items, upper_name=f"I = {n_items} items")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0] or np.any(np.diff(indptr) < 0):
        raise ValueError(f"{name}: indptr must start at 0, never decrease and end at len(indices) = {indices.shape[0]}")
    if indices.size == 0:
        return indptr, indices
    rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(indptr))
    order = np.lexsort((indices, rows))
    rows, indices = rows[order], indices[order]
    keep = np.ones(indices.shape[0], dtype=bool)
    keep[1:] = (rows[1:] != rows[:-1]) | (indices[1:] != indices[:-1])
    rows, indices = rows[keep], indices[keep]
    counts = np.bincount(rows, minlength=n_users)
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, np.ascontiguousarray(indices)


def as_item_filter(x, name: str, n_items: int) -> np.ndarray | None:
    """Normalise a global item filter (``allow`` / ``ban``) to a boolean mask of length I, or None.

    Parameters
    ----------
    x : None, array-like of int ids, or array-like of bool
        A 1-D sequence of item ids in [0, I) (any order, duplicates allowed), or a boolean mask of
        length I. An empty id list is an empty set.
    name : str
        Argument name for error messages.
    n_items : int
        I of the call.

    Returns
    -------
    ndarray of bool, shape (I,), or None when ``x`` is None
    """
    if x is None:
        return None
    arr = to_numpy(x, name)
    if arr.ndim != 1:
        raise ValueError(
            f"{name}: expected a 1-D array of item ids or a boolean mask of length I, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        if arr.shape[0] != n_items:
            raise ValueError(f"{name}: a boolean mask must have length I = {n_items}, got {arr.shape[0]}")
        return arr
    ids = as_index_array(arr, name, n_items, upper_name=f"I = {n_items} items")
    mask = np.zeros(n_items, dtype=bool)
    mask[ids] = True
    return mask


def item_mask(allow, ban, n_items: int) -> tuple[np.ndarray | None, int]:
    """The per-item eligibility the kernels take: ``allowed - banned`` as uint8 (1 = eligible), or None.

    Returns
    -------
    mask : ndarray of uint8, shape (I,), or None
        None when neither filter is given (every item eligible).
    n_eligible : int
        Number of eligible items (I when ``mask`` is None).
    """
    allowed = as_item_filter(allow, "allow", n_items)
    banned = as_item_filter(ban, "ban", n_items)
    if banned is None:
        if allowed is None:
            return None, n_items
        eligible = allowed  # the kernels only read it: no copy of a caller's mask
    elif allowed is None:
        eligible = ~banned
    else:
        eligible = allowed & ~banned
    mask = eligible.view(np.uint8)
    return np.ascontiguousarray(mask), int(np.count_nonzero(mask))


def check_bool(value, name: str) -> bool:
    """``value`` must be a bool (or NumPy bool); returns it as bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def exclusion_range(indptr: np.ndarray, indices: np.ndarray, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR (indptr, indices) of the contiguous rows start:stop (views where possible)."""
    return indptr[start : stop + 1] - indptr[start], indices[indptr[start] : indptr[stop]]


def exclusion_rows(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR (indptr, indices) of a subset of rows, in the given order."""
    starts, stops = indptr[rows], indptr[rows + 1]
    counts = stops - starts
    new_indptr = np.zeros(rows.shape[0] + 1, dtype=np.int64)
    np.cumsum(counts, out=new_indptr[1:])
    if new_indptr[-1] == 0:
        return new_indptr, np.zeros(0, dtype=np.int64)
    gather = np.repeat(starts - new_indptr[:-1], counts) + np.arange(new_indptr[-1])
    return new_indptr, indices[gather]
