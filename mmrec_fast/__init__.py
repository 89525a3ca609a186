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

Installing: ``pip install mmrec_fast`` is the engine alone (NumPy, SciPy, Numba, tqdm); models, encoders,
data loaders, plots, the service and the Ray engine are extras (``pip install "mmrec_fast[models]"``,
docs/install.md). A feature whose extra is missing raises ``ImportError`` naming the extra.
"""

import logging as _logging

from ._version import __version__
from .backends import BlockConfig, available_backends
from .engine import score, score_pairs, topk
from .index import ItemIndex
from .merge import merge_topk
from .reference import topk_reference
from .result import PairScores, TopK
from .similar import similar_items
from .softmax import log_softmax, logsumexp, softmax

# A library logs and lets the application configure handlers (Python's logging HOWTO).
_logging.getLogger(__name__).addHandler(_logging.NullHandler())

__all__ = [
    "topk",
    "softmax",
    "log_softmax",
    "logsumexp",
    "score",
    "score_pairs",
    "ItemIndex",
    "similar_items",
    "TopK",
    "PairScores",
    "merge_topk",
    "available_backends",
    "BlockConfig",
    "topk_reference",
    "__version__",
]
