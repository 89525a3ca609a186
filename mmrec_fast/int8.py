"""Certified int8 first pass of the native engine: top-k equal to the float32 path's, bit for bit.

Items (and, per call, users) are quantised per row to symmetric int8. The first pass scores every
(user, item) pair with integer dot products and a per-pair error certificate ``E(u, v)`` that bounds the
distance to the float32 engine's score (quantisation residuals, the float32 dot product's rounding and
the rounding of computing the bound itself); only items whose upper bound reaches the running k-th best
lower bound survive. The survivors are rescored with the float32 engine's own arithmetic, so indices and
scores equal :func:`mmrec_fast.topk`'s native float32 result exactly. The normaliser comes from the int8
scores with a proven bound ``lse_bound`` (``|lse - lse_fp32| <= lse_bound``). See ``docs/int8.md`` and
``csrc/cpu/int8_topk.cpp``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Int8Items",
    "prepare_int8",
    "topk_int8",
    "int8_levels",
    "int8_level",
    "last_stats",
    "PRECISIONS",
    "check_precision",
    "auto_selects_int8",
    "resolve_precision",
    "cached_int8",
]

DEFAULT_USER_BLOCK = 64
DEFAULT_ITEM_BLOCK = 512

#: The values of the engine's ``precision`` argument.
PRECISIONS = ("fp32", "int8", "auto")
# "auto" on AVX2 (docs/benchmarks/int8.txt, 2-core AMD EPYC): one user against 1M items at k = 10 ran
# 2.0x faster in int8 (4x fewer bytes read), 1000 users 1.18x, and k = 1000 0.58x (the per-pair
# certificate work and the rescoring of ~2k survivors per user, which no int8 kernel speeds up; so the
# k limit holds on every level). Without VNNI only small batches gain; the scalar int8 kernel never does.
# Through ItemIndex.topk (benchmarks/precision_api.py, I = 500k, d = 64, AVX2, fp32/int8 time): k = 10:
# 2.1-2.5x at 1 user, 1.55x at 4, 1.1-1.3x at 8, 0.9x at 16; k = 100: 1.8x at 1 user, 0.8x at 8. So on
# AVX2 int8 needs few users and few list slots (users x k) in all.
AUTO_MAX_USERS = 8
AUTO_MAX_SLOTS = 100
AUTO_MAX_K = 100
# Quantising the catalogue costs about one pass over it: a one-off query (raw arrays, no index) only
# pays it back with enough users.
AUTO_ONE_OFF_MIN_USERS = 64

_warned = False
_last_stats = {"survivors": 0, "fallback_users": 0, "pairs": 0}


def _native():
    try:
        from mmrec_fast import _native  # type: ignore[attr-defined]
    except ImportError as exc:  # pragma: no cover - depends on the build
        raise RuntimeError(f"the int8 path needs the native extension: {exc}") from exc
    global _warned
    if not _warned:
        _warned = True
        for message in _native.int8_self_check_failures():
            warnings.warn(f"mmrec_fast: {message}", RuntimeWarning, stacklevel=3)
    return _native


@dataclass(frozen=True)
class Int8Items:
    """Items quantised for the int8 first pass.

    ``panels``, ``scale``, ``resid`` and ``norm`` are the int8 form (about ``(d + 12) / (4 d)`` of the
    float32 packed index: 0.30x at d = 64, 0.26x at d = 256). ``items`` is a read-only reference to the
    caller's float32 rows, not a copy: the exact rescoring of survivors reads them.
    """

    panels: np.ndarray  # int8 codes, 16-item panels [d4][16][4]
    scale: np.ndarray  # float32 per-item scale (padded to whole panels with 0)
    resid: np.ndarray  # float32 ||v - s q|| rounded up
    norm: np.ndarray  # float32 ||v|| rounded up
    items: np.ndarray  # (I, d) float32 C-contiguous, read-only
    n_items: int
    dim: int

    @property
    def nbytes(self) -> int:
        """Bytes of the int8 form (without the referenced float32 rows)."""
        return int(self.panels.nbytes + self.scale.nbytes + self.resid.nbytes + self.norm.nbytes)


def int8_levels() -> list[str]:
    """int8 kernels this CPU runs whose once-per-process self-check passed, best first."""
    return list(_native().int8_supported_levels())


def int8_level() -> str:
    """The int8 kernel the next call uses (``MMREC_FAST_SIMD`` can lower it, as for the float32 path)."""
    return str(_native().int8_level())


def last_stats() -> dict:
    """Counters of the last :func:`topk_int8` call: ``survivors`` rescored in float32, users computed by
    the float32 fallback (certificates too wide to prune), and ``pairs`` (U x I)."""
    return dict(_last_stats)


def _float_matrix(x, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array, got {type(x).__name__}")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array, got {x.ndim} dimensions")
    if x.dtype != np.float32:
        raise TypeError(f"{name}: expected float32, got {x.dtype}")
    x = np.ascontiguousarray(x)
    if not np.isfinite(x).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    return x


def prepare_int8(items: np.ndarray, *, num_threads: int | None = None) -> Int8Items:
    """Quantise float32 items (I, d) for :func:`topk_int8`.

    Parameters
    ----------
    items : ndarray of float32, shape (I, d)
        Finite item embeddings, 1 <= d <= 65536. Kept by reference (read-only view) for the rescoring.
    num_threads : int, optional
        Threads for the quantisation (``None``: all).

    Returns
    -------
    Int8Items
    """
    items = _float_matrix(items, "items")
    if not 1 <= items.shape[1] <= 65536:
        raise ValueError(f"items: the int8 path needs 1 <= d <= 65536, got d = {items.shape[1]}")
    panels, scale, resid, norm = _native().int8_prepare(items, int(num_threads or 0))
    view = items.view()
    view.flags.writeable = False
    for arr in (panels, scale, resid, norm):
        arr.flags.writeable = False
    return Int8Items(panels, scale, resid, norm, view, int(items.shape[0]), int(items.shape[1]))


def topk_int8(
    users: np.ndarray,
    prepared: Int8Items,
    k: int,
    inv_temperature: float = 1.0,
    excl_indptr: np.ndarray | None = None,
    excl_indices: np.ndarray | None = None,
    item_mask: np.ndarray | None = None,
    normalizer: bool = True,
    num_threads: int | None = None,
    *,
    user_block: int | None = None,
    item_block: int | None = None,
):
    """Top-k by the certified int8 first pass and exact float32 rescoring.

    Parameters
    ----------
    users : ndarray of float32, shape (U, d)
    prepared : Int8Items
        From :func:`prepare_int8`.
    k : int
        List length (>= 1); slots beyond the eligible items hold index -1 and score -inf.
    inv_temperature : float
        1 / temperature of the normaliser (> 0).
    excl_indptr, excl_indices : ndarray of int64, optional
        Per-user excluded items as CSR (rows sorted ascending, unique, in [0, I)), as the kernel contract
        of :mod:`mmrec_fast.backends.base`.
    item_mask : ndarray of uint8 or bool, shape (I,), optional
        Global eligibility (1 = eligible).
    normalizer : bool
        Compute the log-normaliser (from the int8 scores, with its bound); ``False`` skips it.
    num_threads : int, optional
        Threads (``None``: all).

    Returns
    -------
    indices : ndarray of int64, shape (U, k)
    scores : ndarray of float32, shape (U, k)
        Bitwise equal to the native float32 engine's.
    lse : ndarray of float64, shape (U,), or None when ``normalizer=False``
        Log-sum-exp over the eligible items of ``approx / T`` (int8 scores); -inf for no eligible item.
    lse_bound : ndarray of float64, shape (U,), or None
        Proven ``|lse - lse_fp32| <= lse_bound`` against the float32 engine's normaliser (0 for users the
        float32 fallback computed).
    """
    if not isinstance(prepared, Int8Items):
        raise TypeError(f"prepared: expected Int8Items from prepare_int8, got {type(prepared).__name__}")
    users = _float_matrix(users, "users")
    if users.shape[1] != prepared.dim:
        raise ValueError(f"users: dimension {users.shape[1]} does not match the items' {prepared.dim}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    inv_t = float(inv_temperature)
    if not (np.isfinite(inv_t) and inv_t > 0):
        raise ValueError(f"inv_temperature: expected a finite value > 0, got {inv_temperature!r}")
    n_users, n_items = users.shape[0], prepared.n_items
    if excl_indptr is None and excl_indices is None:
        excl_indptr = np.zeros(n_users + 1, dtype=np.int64)
        excl_indices = np.zeros(0, dtype=np.int64)
    elif excl_indptr is None or excl_indices is None:
        raise ValueError("excl_indptr, excl_indices: give both or neither")
    excl_indptr = np.ascontiguousarray(excl_indptr, dtype=np.int64)
    excl_indices = np.ascontiguousarray(excl_indices, dtype=np.int64)
    if excl_indptr.shape != (n_users + 1,):
        raise ValueError(f"excl_indptr: expected shape ({n_users + 1},), got {excl_indptr.shape}")
    if excl_indices.size and (excl_indices.min() < 0 or excl_indices.max() >= n_items):
        raise ValueError(f"excl_indices: ids must lie in [0, {n_items})")
    if item_mask is not None:
        item_mask = np.ascontiguousarray(item_mask)
        if item_mask.shape != (n_items,):
            raise ValueError(f"item_mask: expected shape ({n_items},), got {item_mask.shape}")
        if item_mask.dtype == np.bool_:
            item_mask = item_mask.view(np.uint8)
        elif item_mask.dtype != np.uint8:
            raise TypeError(f"item_mask: expected uint8 or bool, got {item_mask.dtype}")
    k = int(k)
    indices = np.full((n_users, k), -1, dtype=np.int64)
    scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    bound = np.zeros(n_users, dtype=np.float64)
    stats = np.zeros(2, dtype=np.int64)
    k_eff = min(k, n_items)
    if n_users and k_eff:
        out_idx = indices if k_eff == k else np.empty((n_users, k_eff), dtype=np.int64)
        out_sc = scores if k_eff == k else np.empty((n_users, k_eff), dtype=np.float32)
        _native().int8_topk(
            users,
            prepared.panels,
            prepared.scale,
            prepared.resid,
            prepared.norm,
            prepared.items,
            k_eff,
            inv_t,
            excl_indptr,
            excl_indices,
            item_mask,
            bool(normalizer),
            int(user_block or DEFAULT_USER_BLOCK),
            int(item_block or DEFAULT_ITEM_BLOCK),
            int(num_threads or 0),
            out_idx,
            out_sc,
            lse,
            bound,
            stats,
        )
        if k_eff != k:
            indices[:, :k_eff] = out_idx
            scores[:, :k_eff] = out_sc
    _last_stats.update(survivors=int(stats[0]), fallback_users=int(stats[1]), pairs=n_users * n_items)
    if not normalizer:
        return indices, scores, None, None
    return indices, scores, lse, bound


def check_precision(precision) -> str:
    """``precision`` as one of :data:`PRECISIONS` (``ValueError`` naming ``precision`` otherwise)."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise ValueError(f"precision: expected one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    return precision


def auto_selects_int8(level: str, n_users: int, k: int, ready: bool) -> bool:
    """The ``precision="auto"`` rule: whether the int8 path is expected to beat the float32 one.

    Parameters
    ----------
    level : str
        The int8 kernel level (:func:`int8_level`): "avx512vnni", "avx2" or "scalar".
    n_users : int
        Users in the query.
    k : int
        List length.
    ready : bool
        Whether the items' int8 form is kept between queries (an :class:`~mmrec_fast.ItemIndex`); a
        one-off query would quantise the whole catalogue first.

    Returns
    -------
    bool
        True for VNNI (``k <= AUTO_MAX_K``; a one-off query also needs ``AUTO_ONE_OFF_MIN_USERS`` users),
        or AVX2 with a kept int8 form, at most ``AUTO_MAX_USERS`` users and ``n_users * k <=
        AUTO_MAX_SLOTS`` (measured ~2x for one user); False otherwise. Choosing int8 never changes ids or
        scores (bitwise those of the float32 path), only the normaliser within ``TopK.log_normalizer_bound``.
    """
    if k > AUTO_MAX_K:
        return False
    if level == "avx512vnni":
        return ready or n_users >= AUTO_ONE_OFF_MIN_USERS
    return level == "avx2" and ready and n_users <= AUTO_MAX_USERS and n_users * k <= AUTO_MAX_SLOTS


def resolve_precision(precision: str, backend_name: str, *, on_gpu: bool, n_users: int, k: int, ready: bool) -> str:
    """The path a query takes: "fp32" or "int8" (the one dispatch point of ``precision``).

    Parameters
    ----------
    precision : str
        "fp32", "int8" or "auto" (checked by :func:`check_precision`).
    backend_name : str
        The backend the query runs on; only "native" has an int8 path.
    on_gpu : bool
        Whether the users are device arrays.
    n_users, k, ready
        As :func:`auto_selects_int8`.

    Returns
    -------
    str

    Raises
    ------
    ValueError
        ``precision="int8"`` on another backend or with users on a GPU (naming ``precision``).
    """
    precision = check_precision(precision)
    if precision == "fp32":
        return "fp32"
    if backend_name != "native" or on_gpu:
        if precision == "auto":
            return "fp32"
        where = "users on a GPU" if on_gpu else f"the {backend_name!r} backend"
        raise ValueError(
            f"precision: 'int8' runs on the native CPU backend only, not with {where}; "
            "use precision='fp32' or 'auto' (which falls back to float32 there)"
        )
    if precision == "int8":
        return "int8"
    return "int8" if auto_selects_int8(int8_level(), n_users, k, ready) else "fp32"


def cached_int8(holder, items: np.ndarray) -> Int8Items:
    """The int8 form of ``items``, built once per ``holder`` and kept in ``holder.cache["int8"]``.

    ``holder`` is an immutable segment of an index (``cache`` dict and ``lock``, see
    :class:`mmrec_fast.index_state.Segment`) whose rows are ``items``; without a ``cache`` the form is
    built for this call only.
    """
    cache = getattr(holder, "cache", None)
    if cache is None:
        return prepare_int8(items)
    form = cache.get("int8")
    if form is None:
        with holder.lock:  # one quantisation however many threads ask at once
            form = cache.get("int8")
            if form is None:
                form = prepare_int8(np.asarray(items))
                cache["int8"] = form
    return form
