"""Shared test helpers, shipped with the package (tests and benchmarks use the same axes): the backend
list every test parametrizes over -- with every native SIMD level as its own entry -- random problems,
and the one comparison against the float64 reference (:func:`mmrec_fast.reference.topk_reference`).

Needs pytest (the ``[test]`` extra); nothing in the package imports this module.

Tolerances follow float32 arithmetic honestly. A float32 dot product of u and v carries a rounding
error proportional to ``sum_k |u_k v_k|`` (its condition scale), not to the (possibly cancelled) result,
so scores are compared within ``1e-5 x`` that scale per user; the log-normaliser within ``1e-5``
absolute for unit-scale scores, growing with ``scale / temperature`` beyond.
"""

from __future__ import annotations

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast import validation
from mmrec_fast.reference import topk_reference

SCORE_RTOL = 1e-5
LSE_ATOL = 1e-5


def simd_levels() -> list[str]:
    """The native engine's SIMD levels this CPU runs, best first (empty without the native build)."""
    try:
        from mmrec_fast import _native
    except ImportError:
        return []
    return list(_native.supported_simd_levels())


def _backend_params():
    params = []
    for name, status in mf.available_backends().items():
        marks = [] if status.available else [pytest.mark.skip(reason=f"{name} unavailable: {status.detail}")]
        params.append(pytest.param(name, id=name, marks=marks))
        if name == "native" and status.available:
            # Every lower SIMD level runs the same matrix: "native" with MMREC_FAST_SIMD forced by the
            # `simd` marker (tests/conftest.py sets it for the test).
            for level in simd_levels()[1:]:
                params.append(pytest.param(name, id=f"native-{level}", marks=[pytest.mark.simd(level)]))
    return params


#: Every backend -- the CPU engines (the native one once per SIMD level), then "cuda", "cupy" and "torch"
#: (NumPy inputs, so "torch" runs on CPU tensors and "cuda" through its host path); unavailable ones show
#: up as skipped with the reason.
BACKENDS = _backend_params()
#: The same backends with the native engine at its best SIMD level only (for full-size checks).
BACKENDS_BEST_SIMD = [p for p in BACKENDS if not p.id.startswith("native-")]


def random_problem(rng, n_users, n_items, dim, *, scale=None, dtype=np.float32):
    """Unit-scale random embeddings (scores of order 1), as encoders produce after normalisation."""
    scale = 1.0 / np.sqrt(dim) if scale is None else scale
    users = (rng.standard_normal((n_users, dim)) * scale).astype(dtype)
    items = (rng.standard_normal((n_items, dim)) * scale).astype(dtype)
    return users, items


def random_exclusion(rng, n_users, n_items, density=0.1, full_rows=()):
    """CSR exclusion with random rows, some rows possibly excluding the whole catalogue."""
    import scipy.sparse as sp

    mat = sp.random(n_users, n_items, density=density, format="lil", random_state=rng)
    for row in full_rows:
        mat[row, :] = 1.0
    return mat.tocsr()


def assert_topk_matches(result, users, items, k, *, exclude=None, temperature=1.0, exact_ids=False):
    """Check a TopK against the float64 reference on the float32-rounded inputs.

    Parameters
    ----------
    exact_ids : bool
        Require identical ids everywhere (inputs whose float32 scores are exact, e.g. small integers).
        Otherwise ids must match wherever the reference's neighbouring scores differ by more than the
        float32 tolerance, and every listed id must truly score as well as the slot demands.
    """
    u32 = validation.as_float_matrix(users, "users").astype(np.float64)
    v32 = validation.as_float_matrix(items, "items").astype(np.float64)
    n_users, n_items = u32.shape[0], v32.shape[0]
    indptr, indices = validation.as_exclusion(exclude, n_users, n_items)
    ref_idx, ref_scores, ref_lse = topk_reference(
        u32, v32, k + 1, excl_indptr=indptr, excl_indices=indices, temperature=temperature
    )
    assert result.indices.shape == (n_users, k) and result.indices.dtype == np.int64
    assert result.scores.shape == (n_users, k) and result.scores.dtype == np.float32
    assert result.probs.shape == (n_users, k) and result.probs.dtype == np.float32
    assert result.log_normalizer.shape == (n_users,)

    scale = (np.abs(u32) @ np.abs(v32).T).max(axis=1, initial=0.0) if n_items else np.zeros(n_users)
    score_tol = SCORE_RTOL * np.maximum(scale, np.finfo(np.float32).tiny)
    lse_tol = LSE_ATOL * np.maximum(1.0, scale / temperature)

    # Padding: exactly the slots beyond the eligible items.
    pad = ref_idx[:, :k] < 0
    np.testing.assert_array_equal(result.indices < 0, pad, err_msg="padding slots differ")
    assert np.all(np.isneginf(result.scores[pad])) and np.all(result.probs[pad] == 0)

    # Listed ids: valid, unique per row, not excluded, and truly as good as their slot.
    dense = u32 @ v32.T if n_items else np.zeros((n_users, 0))
    for row in range(n_users):
        ids = result.indices[row][~pad[row]]
        assert len(set(ids.tolist())) == ids.size, f"row {row}: duplicate ids"
        assert not np.isin(ids, indices[indptr[row] : indptr[row + 1]]).any(), f"row {row}: excluded id listed"
        true = dense[row, ids]
        np.testing.assert_allclose(
            true,
            ref_scores[row, : ids.size],
            rtol=0,
            atol=2 * score_tol[row],
            err_msg=f"row {row}: a listed item scores worse than its slot",
        )
        np.testing.assert_allclose(
            result.scores[row, : ids.size],
            ref_scores[row, : ids.size],
            rtol=0,
            atol=score_tol[row],
            err_msg=f"row {row}: scores",
        )

    # Ids identical wherever the reference's order is unambiguous at float32 precision.
    padded = np.concatenate([np.full((n_users, 1), np.inf), ref_scores], axis=1)  # slot -1 = +inf
    with np.errstate(invalid="ignore"):
        gap_before = padded[:, :k] - padded[:, 1 : k + 1]
        gap_after = padded[:, 1 : k + 1] - padded[:, 2 : k + 2]
    clear = (gap_before > 2 * score_tol[:, None]) & (gap_after > 2 * score_tol[:, None]) & ~pad
    if exact_ids:
        clear = ~pad
    mismatch = clear & (result.indices != ref_idx[:, :k])
    assert not mismatch.any(), (
        f"{int(mismatch.sum())} ids differ from the reference, first at {tuple(np.argwhere(mismatch)[0])}"
    )

    # Normaliser and probabilities.
    both_inf = np.isneginf(ref_lse) & np.isneginf(result.log_normalizer)
    np.testing.assert_array_equal(np.isneginf(result.log_normalizer), np.isneginf(ref_lse))
    with np.errstate(invalid="ignore"):
        diff = np.abs(np.where(both_inf, 0.0, result.log_normalizer - ref_lse))
    assert np.all(diff <= lse_tol), f"log_normalizer off by {diff.max():.3g} (tol {lse_tol.min():.3g})"
    ref_probs = mf.result.probabilities(ref_scores[:, :k], ref_lse, temperature)
    # Probabilities of listed items carry the score and normaliser errors, relative to the probability.
    prob_tol = ref_probs * 3 * (score_tol[:, None] / temperature + lse_tol[:, None]) + 1e-7
    assert np.all(np.abs(result.probs - ref_probs) <= prob_tol), "probabilities"
