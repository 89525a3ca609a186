"""Array families (NumPy, torch, CuPy): where an array lives and how to move between families.

The GPU-capable backends (``torch``, ``cuda``, ``cupy``) compute on the caller's own arrays -- torch
tensors and CuPy arrays stay where they are, zero-copy -- and return results of the same family as the
``users`` argument. This module is the one place that knows the three families; torch and CuPy are
imported only when an array of theirs is seen (``sys.modules`` lookups, never an import of our own), so
nothing here slows ``import mmrec_fast`` or requires either package.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np

__all__ = [
    "family",
    "is_device",
    "device_index",
    "to_family",
    "max_abs",
    "max_row_norm",
    "probabilities",
    "full",
    "asnumpy",
]

# Rows per float64 chunk in max_row_norm: bounded temporaries on any device.
_NORM_CHUNK = 65536


def family(x) -> str:
    """ "torch", "cupy" or "numpy" (anything else is converted through NumPy)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(x, cupy.ndarray):
        return "cupy"
    return "numpy"


def is_device(x) -> bool:
    """Whether ``x`` lives in GPU memory (a CUDA torch tensor or a CuPy array)."""
    fam = family(x)
    if fam == "torch":
        return x.device.type == "cuda"
    return fam == "cupy"


def device_index(x) -> int | None:
    """CUDA device ordinal of a device array, ``None`` for host arrays."""
    fam = family(x)
    if fam == "torch":
        return x.device.index if x.device.type == "cuda" else None
    if fam == "cupy":
        return int(x.device.id)
    return None


def asnumpy(x) -> np.ndarray:
    """Host NumPy copy/view of an array of any family."""
    fam = family(x)
    if fam == "torch":
        return x.detach().cpu().numpy()
    if fam == "cupy":
        return x.get()
    return np.asarray(x)


def to_family(x, fam: str, *, like=None):
    """``x`` as an array of family ``fam`` (zero-copy where the memory is already right).

    Parameters
    ----------
    x : array
        NumPy array, torch tensor or CuPy array.
    fam : str
        "numpy", "torch" or "cupy".
    like : array, optional
        For "torch": a tensor whose device the result should live on (default: stay where ``x`` is,
        host NumPy arrays become CPU tensors).
    """
    src = family(x)
    if fam == "numpy":
        return asnumpy(x)
    if fam == "torch":
        import torch

        if src == "torch":
            t = x
        elif src == "cupy":
            t = torch.from_dlpack(x)
        else:
            x = np.ascontiguousarray(x)
            with warnings.catch_warnings():
                # A read-only array (an ItemIndex's own frozen copy) is only ever read by the engine.
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                t = torch.from_numpy(x)
        if like is not None and t.device != like.device:
            t = t.to(like.device)
        return t
    if fam == "cupy":
        import cupy

        if src == "cupy":
            return x
        if src == "torch" and x.device.type == "cuda":
            return cupy.from_dlpack(x.detach())
        return cupy.asarray(asnumpy(x))
    raise ValueError(f"unknown array family {fam!r}")


def full(fam: str, shape, value, dtype: str, *, like=None):
    """A new array of family ``fam`` filled with ``value`` (on ``like``'s device for torch/CuPy)."""
    if fam == "torch":
        import torch

        return torch.full(shape, value, dtype=getattr(torch, dtype), device=like.device if like is not None else None)
    if fam == "cupy":
        import cupy

        with cupy.cuda.Device(device_index(like) if like is not None else cupy.cuda.Device().id):
            return cupy.full(shape, value, dtype=dtype)
    return np.full(shape, value, dtype=dtype)


def max_abs(x) -> float:
    """Largest absolute value (0 for an empty array), without an |x|-sized temporary."""
    if x.shape[0] == 0 or x.shape[-1] == 0:
        return 0.0
    return float(max(-float(x.min()), float(x.max())))


def max_row_norm(x) -> float:
    """Largest Euclidean row norm in float64, a bounded chunk of rows at a time, on ``x``'s device."""
    best = 0.0
    fam = family(x)
    for start in range(0, x.shape[0], _NORM_CHUNK):
        block = x[start : start + _NORM_CHUNK]
        if fam == "torch":
            block = block.double()
            value = float((block * block).sum(dim=1).max())
        elif fam == "cupy":
            block = block.astype("float64")
            value = float((block * block).sum(axis=1).max())
        else:
            block = np.asarray(block, dtype=np.float64)
            value = float(np.einsum("ij,ij->i", block, block).max(initial=0.0))
        best = max(best, float(np.sqrt(value)))
    return best


def probabilities(scores, log_normalizer, temperature: float):
    """``exp(score / T - lse)`` as float32 in the family of ``scores`` (0 where score or lse is -inf).

    Computed in float64 like :func:`mmrec_fast.result.probabilities`; padding slots and users without
    an eligible item never compute (-inf) - (-inf).
    """
    fam = family(scores)
    if fam == "torch":
        import torch

        s = scores.double()
        lse = log_normalizer.double().reshape(-1, *([1] * (s.dim() - 1)))
        present = torch.isfinite(s) & torch.isfinite(lse)
        logp = torch.where(
            present, torch.clamp(s * (1.0 / temperature) - torch.where(present, lse, 0.0), max=0.0), float("-inf")
        )
        return torch.exp(logp).float()
    if fam == "cupy":
        import cupy

        s = scores.astype(cupy.float64)
        lse = log_normalizer.astype(cupy.float64).reshape((-1,) + (1,) * (s.ndim - 1))
        present = cupy.isfinite(s) & cupy.isfinite(lse)
        logp = cupy.where(
            present, cupy.minimum(s * (1.0 / temperature) - cupy.where(present, lse, 0.0), 0.0), -cupy.inf
        )
        return cupy.exp(logp).astype(cupy.float32)
    raise TypeError(f"probabilities: unsupported array family {fam!r}")
