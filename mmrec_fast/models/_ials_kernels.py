"""Numba kernels of iALS: one half-step (all user rows, or all item rows) solved in parallel.

The loss (Rendle et al. 2021, "Revisiting the Performance of iALS on Item Recommendation Benchmarks")

    L = sum_{(u,i) observed} c_ui (w_u.h_i - 1)^2 + alpha0 * sum_{u,i} (w_u.h_i)^2
        + sum_u lambda_u |w_u|^2 + sum_i lambda_i |h_i|^2

is quadratic in one side when the other is fixed; for row u the minimiser solves

    (alpha0 * H^T H + sum_{i in I_u} c_ui h_i h_i^T + lambda_u I) w_u = sum_{i in I_u} c_ui h_i.

``alpha0 * H^T H`` (the "Gram trick": the all-pairs term costs d^2 per row, not |I| d) is computed once
per half-step with BLAS by the caller and passed in as ``gram``. Rows are independent, so ``prange``
over rows gives the same result for any thread count (each row is computed by one thread, in a fixed
order).

Two solvers:

- :func:`solve_rows_exact` builds each row's d x d system in float64 and solves it with LAPACK (exact
  up to rounding): used by fold-in and by ``solver="cholesky"`` (the reference-grade path).
- :func:`solve_rows_cg` runs a few conjugate-gradient steps on the same system, warm-started from the
  row's current vector (Takacs et al. 2011; what ``implicit`` does): O(d^2 + |I_u| d) per step instead of
  O(|I_u| d^2 + d^3) -- the fast path for large d and dense rows.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["solve_rows_exact", "solve_rows_cg", "observed_loss"]


@numba.njit(parallel=True, cache=True)
def solve_rows_exact(indptr, indices, weights, fixed, gram, reg, out):  # pragma: no cover - compiled
    """Exact per-row solve of the weighted normal equations; rows written into ``out`` (float32).

    Parameters
    ----------
    indptr, indices : int arrays
        CSR structure of the rows being solved (row r observes columns ``indices[indptr[r]:indptr[r+1]]``).
    weights : float32 array
        Confidence ``c`` of each stored entry (aligned with ``indices``).
    fixed : float32 (n_fixed, d)
        The other side's vectors (held fixed).
    gram : float64 (d, d)
        ``alpha0 * fixed^T fixed``.
    reg : float64 (n_rows,)
        Per-row ridge ``lambda_r``.
    out : float32 (n_rows, d)
        Receives the solutions.
    """
    n_rows = out.shape[0]
    d = out.shape[1]
    for r in numba.prange(n_rows):
        a = gram.copy()
        b = np.zeros(d)
        for k in range(d):
            a[k, k] += reg[r]
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            c = np.float64(weights[p])
            h = fixed[j].astype(np.float64)
            for k in range(d):
                ck = c * h[k]
                b[k] += ck
                for m in range(d):
                    a[k, m] += ck * h[m]
        if indptr[r + 1] == indptr[r]:
            # No observation: the minimiser is exactly 0 (b = 0, A positive definite); skip LAPACK.
            for k in range(d):
                out[r, k] = 0.0
            continue
        x = np.linalg.solve(a, b)
        for k in range(d):
            out[r, k] = x[k]


@numba.njit(parallel=True, fastmath=True, cache=True)
def solve_rows_cg(indptr, indices, weights, fixed, gram, reg, out, steps):  # pragma: no cover - compiled
    """``steps`` conjugate-gradient steps per row on the normal equations, warm-started from ``out``.

    Same arguments as :func:`solve_rows_exact` except ``gram`` is float32 (the CG loop runs in float32
    like implicit's) and ``out`` holds the starting point on entry. ``fastmath`` is safe here: only
    reassociation of dot-product sums changes, and CG is an iterative method whose result is
    approximate anyway; the inputs are checked finite before the call.
    """
    n_rows = out.shape[0]
    d = out.shape[1]
    for r in numba.prange(n_rows):
        x = out[r].copy()
        lam = np.float32(reg[r])
        # r_vec = b - A x, with A x = gram x + lam x + sum_i c_i h_i (h_i . x)
        res = np.empty(d, dtype=np.float32)
        for k in range(d):
            acc = np.float32(0.0)
            for m in range(d):
                acc += gram[k, m] * x[m]
            res[k] = -acc - lam * x[k]
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            c = weights[p]
            dot = np.float32(0.0)
            for k in range(d):
                dot += fixed[j, k] * x[k]
            coef = c * (np.float32(1.0) - dot)
            for k in range(d):
                res[k] += coef * fixed[j, k]
        direction = res.copy()
        rs_old = np.float32(0.0)
        for k in range(d):
            rs_old += res[k] * res[k]
        ap = np.empty(d, dtype=np.float32)
        for _ in range(steps):
            if rs_old < 1e-20:
                break
            for k in range(d):
                acc = np.float32(0.0)
                for m in range(d):
                    acc += gram[k, m] * direction[m]
                ap[k] = acc + lam * direction[k]
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                dot = np.float32(0.0)
                for k in range(d):
                    dot += fixed[j, k] * direction[k]
                coef = weights[p] * dot
                for k in range(d):
                    ap[k] += coef * fixed[j, k]
            p_ap = np.float32(0.0)
            for k in range(d):
                p_ap += direction[k] * ap[k]
            if p_ap <= 0:
                break
            step = rs_old / p_ap
            rs_new = np.float32(0.0)
            for k in range(d):
                x[k] += step * direction[k]
                res[k] -= step * ap[k]
                rs_new += res[k] * res[k]
            beta = rs_new / rs_old
            for k in range(d):
                direction[k] = res[k] + beta * direction[k]
            rs_old = rs_new
        for k in range(d):
            out[r, k] = x[k]


@numba.njit(parallel=True, cache=True)
def observed_loss(indptr, indices, weights, rows, cols):  # pragma: no cover - compiled
    """Per row, ``sum_i c_ui (s_ui - 1)^2`` over its observed entries (``s``: float64 dot product)."""
    n_rows = rows.shape[0]
    d = rows.shape[1]
    out = np.zeros(n_rows)
    for r in numba.prange(n_rows):
        acc = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            s = 0.0
            for k in range(d):
                s += np.float64(rows[r, k]) * np.float64(cols[j, k])
            acc += np.float64(weights[p]) * (s - 1.0) ** 2
        out[r] = acc
    return out
