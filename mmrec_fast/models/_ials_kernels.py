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


#: Rows per conjugate-gradient block: the block's ``direction @ gram`` products are one BLAS GEMM
#: (the d x d Gram matrix is read once per block, not once per row: 2-3x faster at d = 128 than per-row
#: GEMV, measured on ML-100K-sized and synthetic data); small enough that a block's scratch stays in L2.
CG_BLOCK = 64


@numba.njit(parallel=True, fastmath=True, cache=True)
def solve_rows_cg(indptr, indices, weights, fixed, gram, reg, out, steps):  # pragma: no cover - compiled
    """``steps`` conjugate-gradient steps per row on the normal equations, warm-started from ``out``.

    Same arguments as :func:`solve_rows_exact` except ``gram`` is float32 (the CG loop runs in float32
    like implicit's) and ``out`` holds the starting point on entry. Rows are processed in blocks of
    :data:`CG_BLOCK` (the blocking is fixed, so results do not depend on the thread count); each row
    runs its own CG recurrence and stops early once its residual vanishes. ``fastmath`` is safe here:
    it only reassociates dot-product sums of an iterative method whose result is approximate anyway,
    and the inputs are checked finite before the call.
    """
    n_rows = out.shape[0]
    d = out.shape[1]
    n_blocks = (n_rows + CG_BLOCK - 1) // CG_BLOCK
    one = np.float32(1.0)
    for blk in numba.prange(n_blocks):
        r0 = blk * CG_BLOCK
        r1 = min(r0 + CG_BLOCK, n_rows)
        nb = r1 - r0
        x = out[r0:r1].copy()
        # residual = b - A x, with A x = gram x + lam x + sum_i c_i h_i (h_i . x); gram is symmetric.
        res = -np.dot(x, gram)
        rs_old = np.zeros(nb, dtype=np.float32)
        for i in range(nb):
            r = r0 + i
            lam = np.float32(reg[r])
            for k in range(d):
                res[i, k] -= lam * x[i, k]
            for p in range(indptr[r], indptr[r + 1]):
                j = indices[p]
                dot = np.float32(0.0)
                for k in range(d):
                    dot += fixed[j, k] * x[i, k]
                coef = weights[p] * (one - dot)
                for k in range(d):
                    res[i, k] += coef * fixed[j, k]
            acc = np.float32(0.0)
            for k in range(d):
                acc += res[i, k] * res[i, k]
            rs_old[i] = acc
        direction = res.copy()
        active = rs_old >= 1e-20
        for _ in range(steps):
            ap = np.dot(direction, gram)
            for i in range(nb):
                if not active[i]:
                    continue
                r = r0 + i
                lam = np.float32(reg[r])
                for k in range(d):
                    ap[i, k] += lam * direction[i, k]
                for p in range(indptr[r], indptr[r + 1]):
                    j = indices[p]
                    dot = np.float32(0.0)
                    for k in range(d):
                        dot += fixed[j, k] * direction[i, k]
                    coef = weights[p] * dot
                    for k in range(d):
                        ap[i, k] += coef * fixed[j, k]
                p_ap = np.float32(0.0)
                for k in range(d):
                    p_ap += direction[i, k] * ap[i, k]
                if p_ap <= 0:
                    active[i] = False
                    continue
                step = rs_old[i] / p_ap
                rs_new = np.float32(0.0)
                for k in range(d):
                    x[i, k] += step * direction[i, k]
                    res[i, k] -= step * ap[i, k]
                    rs_new += res[i, k] * res[i, k]
                beta = rs_new / rs_old[i]
                for k in range(d):
                    direction[i, k] = res[i, k] + beta * direction[i, k]
                rs_old[i] = rs_new
                if rs_new < 1e-20:
                    active[i] = False
        for i in range(nb):
            for k in range(d):
                out[r0 + i, k] = x[i, k]


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
