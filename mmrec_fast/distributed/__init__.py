"""The same engine sharded over a Ray cluster: exact results, bounded driver memory, lost workers retried.

Importing this package does not import Ray (nor does ``import mmrec_fast``); Ray is imported, and a
local Ray started, on first use. Install with ``pip install "mmrec_fast[ray]"``.

- :class:`RayTopK`: items prepared once on worker actors (optionally in item shards); query many times
  with :meth:`~RayTopK.iter_batches` (iterator of :class:`UserBatch`), :meth:`~RayTopK.to_parquet` or
  :meth:`~RayTopK.topk` (the whole result, when asked).
- :func:`topk`, :func:`iter_topk`, :func:`topk_to_parquet`: one-shot versions (start workers, run, stop).
- :class:`TopKScorer`, :func:`map_batches_args`: Ray Data ``Dataset.map_batches`` over user vectors.
- :func:`init`, :func:`shutdown`: the local embedded Ray, or a cluster by address.
- :func:`read_topk_parquet`: load a result file back into a :class:`~mmrec_fast.TopK`.
"""

from .cluster import init, shutdown
from .data import TopKScorer, map_batches_args
from .engine import RayTopK, iter_topk, topk, topk_to_parquet
from .parquet import ParquetSink, read_topk_parquet
from .scheduler import RunStats, UserBatch

__all__ = [
    "RayTopK",
    "topk",
    "iter_topk",
    "topk_to_parquet",
    "UserBatch",
    "RunStats",
    "TopKScorer",
    "map_batches_args",
    "ParquetSink",
    "read_topk_parquet",
    "init",
    "shutdown",
]
