"""The kernel contract every backend implements, and the block-size configuration they share.

The public functions (:func:`mmrec_fast.topk` & co.) validate and normalise every input, then call a
backend with arrays that are already in the one canonical form below. Backends therefore never
validate user input; they only compute.

Kernel contract (``Backend.topk_into``)
---------------------------------------
Inputs (all validated and converted by the caller):

``users``          float32, C-contiguous, shape (U, d), all finite.
``prepared``       whatever ``Backend.prepare_items(items, config, persistent=...)`` returned for a
                   float32 C-contiguous (I, d) item matrix (all finite). ``prepared`` is read-only and
                   reusable across calls. ``persistent=True`` (an :class:`~mmrec_fast.ItemIndex` the user
                   keeps) may pack a full copy for speed; ``persistent=False`` (one ``topk`` call on a
                   raw array) should avoid a full copy of the catalogue if the backend can, so a single
                   query runs in the memory of its inputs and outputs.
``k``              int >= 1 (may exceed I).
``inv_temperature`` float > 0 (1 / temperature, with log2(e) / temperature finite in float32).
``excl_indptr``    int64, shape (U + 1,), CSR row pointers of excluded items (0 .. nnz, monotone).
``excl_indices``   int64, shape (nnz,); within each row sorted ascending, unique, in [0, I).
``config``         :class:`BlockConfig` (``None`` fields mean "the backend's own default").
``out_indices``    int64 (U, k), ``out_scores`` float32 (U, k), ``out_lse`` float64 (U,): written fully.

Semantics, identical on every backend:

* ``s_ij`` is the float32 dot product of user i and item j, accumulated in float32.
* Item j is *eligible* for user i unless j appears in row i of the exclusion CSR.
* ``out_lse[i] = log(sum over eligible j of exp(s_ij * inv_temperature))``, computed online while the
  item blocks stream by: per block the raw float32 maximum ``m`` and the float32 sum of
  ``exp((s - m) * inv_t32)`` (difference first, so the exponent keeps its precision at any temperature;
  ``inv_t32`` from :func:`scale_factor32`), the running (``m * inv_temperature`` in float64, sum)
  rescaled and accumulated in float64 so catalogues of 10^7 items do not drift. The float64 reference
  ``m * inv_temperature`` is the very product :func:`mmrec_fast.result.probabilities` computes for
  the top score, so the normaliser and the probabilities come from the same scaled scores.
  A user with no eligible item gets ``-inf`` (never ``-inf - -inf``).
* Top-k: eligible items ordered by (score descending, item index ascending) -- ties go to the lower
  index -- first k of them. Slots beyond the number of eligible items hold index -1 and score -inf.
* Algorithm: item blocks in ascending order; per block, scores for a block of users; each user keeps a
  running threshold (its k-th best so far, -inf until k candidates were seen) and appends only items
  with ``score > threshold`` (strict: a later item with an equal score loses the tie) to a candidate
  buffer of a few k; when the buffer is full it is pruned and the threshold raised to a score that at
  least k kept, earlier candidates reach; the final buffer is cut to the exact best k and sorted.
  Working memory is O(threads x (user_block x item_block + user_block x buffer)), independent of U x I.
  How each engine meets this (the native engine's base-2 exponents, bucket prune and threshold guess):
  ``docs/engine.md``.
* The result must not depend on the number of threads.

Array backends (``array_api = True``: "cuda", "cupy", "torch")
-------------------------------------------------------------
Same semantics, but they compute on the caller's own arrays instead of host float32 NumPy, so GPU data
never makes a round trip through the host. The engine validates users and items where they live
(:func:`mmrec_fast.validation.as_float_matrix_any`: float32, or float16/bfloat16 kept as they are when
the backend sets ``half_inputs``), validates the exclusion CSR on the host, and calls:

``prepare_items(items, config, persistent=...)``  as above, with items of any array family.
``adopt_users(users, prepared)``    the users in the form ``topk_arrays`` takes (e.g. moved to the
                                    items' device); raises ``ValueError`` for users on another GPU.
``chunk_users(n_items, dim, prepared)``  users per engine call, or ``None`` for the CPU default.
``topk_arrays(users, prepared, k, inv_temperature, excl_indptr, excl_indices, config)``
                                    returns ``(indices, scores, lse)`` -- (U, k) int64, (U, k) float32,
                                    (U,) float64 -- as arrays of the family of ``users`` (1 <= k <= I).

The engine pads to the requested k and returns results in the family of the caller's ``users``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

_FLOAT32_TINY = np.float32(np.finfo(np.float32).tiny)


def scale_factor32(inv_temperature: float) -> np.float32:
    """``1 / temperature`` as the float32 factor of the exponent differences.

    Never below the smallest normal float32: at temperatures past ~1e38 the float32 quotient would be 0
    and an excluded item's ``-inf * 0`` a NaN; scores are then all but equal anyway (``|s| / T`` is tiny).
    """
    return max(np.float32(inv_temperature), _FLOAT32_TINY)


@dataclass(frozen=True)
class BlockConfig:
    """Tile sizes and threading for the blocked kernels.

    Parameters
    ----------
    user_block : int, optional
        Users scored together against one item block. ``None``: the backend's default (sized so a
        ``user_block x item_block`` float32 score tile stays in the L2 cache).
    item_block : int, optional
        Items per block. ``None``: the backend's default.
    num_threads : int, optional
        Worker threads. ``None``: all cores the runtime (OpenMP / Numba) reports.
    candidate_factor : int
        Candidate buffer capacity per user, as a multiple of k (at least ``k + 16``). Larger buffers
        prune less often; smaller ones use less memory.
    """

    user_block: int | None = None
    item_block: int | None = None
    num_threads: int | None = None
    candidate_factor: int = 2

    def __post_init__(self):
        for name in ("user_block", "item_block", "num_threads"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name}: expected a positive integer or None, got {value!r}")
        if not isinstance(self.candidate_factor, (int, np.integer)) or self.candidate_factor < 1:
            raise ValueError(f"candidate_factor: expected an integer >= 1, got {self.candidate_factor!r}")

    def buffer_capacity(self, k: int) -> int:
        """Candidate buffer slots per user for a given k."""
        return max(self.candidate_factor * k, k + 16)


class Backend(Protocol):
    """What the registry expects of a backend module's ``BACKEND`` object."""

    name: str

    def prepare_items(self, items: np.ndarray, config: BlockConfig, *, persistent: bool = True) -> Any:
        """Return a reusable, read-only representation of a float32 (I, d) C-contiguous item matrix."""

    def topk_into(
        self,
        users: np.ndarray,
        prepared: Any,
        k: int,
        inv_temperature: float,
        excl_indptr: np.ndarray,
        excl_indices: np.ndarray,
        config: BlockConfig,
        out_indices: np.ndarray,
        out_scores: np.ndarray,
        out_lse: np.ndarray,
    ) -> None:
        """Fill ``out_*`` per the kernel contract of this module."""


class ArrayBackend(Backend, Protocol):
    """A backend with ``array_api = True`` ("cuda", "cupy", "torch"): computes on the caller's arrays."""

    array_api: bool

    def adopt_users(self, users: Any, prepared: Any) -> Any:
        """The users in the form :meth:`topk_arrays` takes (e.g. moved to the items' device)."""

    def chunk_users(self, n_items: int, dim: int, prepared: Any) -> int | None:
        """Users per engine call, or ``None`` for the CPU default."""

    def topk_arrays(
        self,
        users: Any,
        prepared: Any,
        k: int,
        inv_temperature: float,
        excl_indptr: np.ndarray,
        excl_indices: np.ndarray,
        config: BlockConfig,
    ) -> tuple[Any, Any, Any]:
        """``(indices, scores, lse)`` as arrays of the family of ``users``."""
