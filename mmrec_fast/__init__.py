"""mmrec_fast: full-catalogue scoring for multimodal recommendation.

For U users and I items: blocked dot products, the exact softmax normaliser over the whole eligible
catalogue, and each user's top-k -- without ever materialising the U x I score matrix -- on a native
C++ (OpenMP, run-time SIMD), Numba or NumPy backend, or on a GPU (a fused CUDA kernel for NumPy, torch
and CuPy inputs; chunked PyTorch on CPU or CUDA tensors).

Quick tour
----------
>>> import numpy as np, mmrec_fast as mf
>>> rng = np.random.default_rng(0)
>>> users, items = rng.normal(size=(100, 32)), rng.normal(size=(5000, 32))
>>> top = mf.topk(users, items, k=10)          # indices, scores, log_normalizer, probs
>>> top.indices.shape
(100, 10)
>>> index = mf.ItemIndex(items)                # pack once, query many times
>>> bool((index.topk(users, 10).indices == top.indices).all())
True
"""

from .backends import BlockConfig, available_backends
from .engine import score, score_pairs, topk
from .index import ItemIndex
from .merge import merge_topk
from .reference import topk_reference
from .result import PairScores, TopK
from .softmax import log_softmax, logsumexp, softmax

__version__ = "0.1.0"

__all__ = [
    "topk",
    "softmax",
    "log_softmax",
    "logsumexp",
    "score",
    "score_pairs",
    "ItemIndex",
    "TopK",
    "PairScores",
    "merge_topk",
    "available_backends",
    "BlockConfig",
    "topk_reference",
    "__version__",
]
