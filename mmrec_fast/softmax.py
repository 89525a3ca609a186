"""Numerically stable softmax, log-softmax and log-sum-exp over score rows.

The naive ``exp(s) / exp(s).sum()`` overflows to inf/inf = NaN once scores exceed ~88 (float32) or ~709
(float64). Shifting by the row maximum makes every exponent <= 0. A row whose entries are all -inf
(e.g. every item masked) has no maximum to shift by: it must not compute (-inf) - (-inf) = NaN; it is
handled explicitly (log-sum-exp -inf, probabilities 0, log-probabilities -inf).
"""

from __future__ import annotations

import numpy as np

from . import validation

__all__ = ["logsumexp", "softmax", "log_softmax"]


def _prepare(scores, temperature, axis):
    temperature = validation.check_temperature(temperature)
    arr = validation.to_numpy(scores, "scores")
    if arr.dtype.kind not in "fiu" or arr.dtype == bool:
        raise ValueError(f"scores: expected a real numeric array, got dtype {arr.dtype}")
    # float16 and integers compute in float32 / float64 respectively; float32 stays float32.
    dtype = np.float64 if arr.dtype in (np.float64,) or arr.dtype.kind in "iu" else np.float32
    arr = np.asarray(arr, dtype=dtype)
    if arr.ndim == 0:
        raise ValueError("scores: expected at least one dimension")
    if not -arr.ndim <= axis < arr.ndim:
        raise ValueError(f"axis: {axis} out of range for scores with {arr.ndim} dimensions")
    if np.isnan(arr).any():
        raise ValueError("scores: contains NaN")
    if np.isposinf(arr).any():
        raise ValueError("scores: contains +inf (only -inf, meaning 'masked', is allowed)")
    scaled = arr / arr.dtype.type(temperature) if temperature != 1.0 else arr
    if not np.all(np.isfinite(scaled) | np.isneginf(arr)):
        raise ValueError(f"temperature: {temperature:g} makes scores / temperature overflow {arr.dtype}")
    return scaled


def _shifted(scaled, axis):
    """(scaled - row max) with all -inf rows shifted by 0 instead of -inf, and the row max."""
    row_max = scaled.max(axis=axis, keepdims=True, initial=-np.inf)
    safe_max = np.where(np.isfinite(row_max), row_max, 0)
    return scaled - safe_max, row_max, safe_max


def logsumexp(scores, *, axis=-1, temperature=1.0, keepdims=False):
    """``log(sum(exp(scores / temperature)))`` along ``axis``, stable for any magnitude.

    Parameters
    ----------
    scores : array-like
        Real scores; -inf entries are masked out. NaN or +inf raise ``ValueError``.
    axis : int
        Axis to reduce.
    temperature : float
        Positive divisor applied to the scores first.
    keepdims : bool
        Keep the reduced axis with length 1.

    Returns
    -------
    ndarray
        float32 for float16/float32 input, else float64; -inf where every entry is -inf (or the axis is
        empty).

    Examples
    --------
    >>> import mmrec_fast as mf
    >>> float(mf.logsumexp([1000.0, 1000.0]))  # naive log(sum(exp)) would be inf
    1000.6931471805599
    """
    scaled = _prepare(scores, temperature, axis)
    shifted, row_max, safe_max = _shifted(scaled, axis)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    with np.errstate(divide="ignore"):
        out = np.where(np.isfinite(row_max), safe_max + np.log(total), -np.inf).astype(scaled.dtype)
    return out if keepdims else np.squeeze(out, axis=axis)


def log_softmax(scores, *, axis=-1, temperature=1.0):
    """``scores / temperature - logsumexp(scores / temperature)`` along ``axis``.

    All -inf rows give all -inf (there is no distribution to take the log of).

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> np.round(mf.log_softmax(np.array([0.0, 0.0])), 4)
    array([-0.6931, -0.6931])
    """
    scaled = _prepare(scores, temperature, axis)
    lse = logsumexp(scaled, axis=axis, keepdims=True)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(lse), scaled - lse, -np.inf).astype(scaled.dtype)


def softmax(scores, *, axis=-1, temperature=1.0):
    """``exp(scores / temperature)`` normalised to sum to 1 along ``axis``, without overflow.

    -inf entries get probability 0; a row of only -inf gets all zeros (no eligible entry), never NaN.

    Examples
    --------
    >>> import numpy as np, mmrec_fast as mf
    >>> mf.softmax(np.array([[1000.0, 1000.0], [-np.inf, -np.inf]]))
    array([[0.5, 0.5],
           [0. , 0. ]])
    """
    scaled = _prepare(scores, temperature, axis)
    shifted, row_max, _ = _shifted(scaled, axis)
    e = np.exp(shifted)
    total = e.sum(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(np.isfinite(row_max), e / np.where(total > 0, total, 1), 0).astype(scaled.dtype)
