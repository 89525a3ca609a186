"""Ray Data: score a dataset of user vectors with ``Dataset.map_batches``.

:class:`TopKScorer` is a callable class: Ray Data builds it once per actor of its pool (so the item
index is prepared once per worker) and calls it on batches of rows. :func:`map_batches_args` validates
on the driver and puts the items into the object store once, returning the keyword arguments::

    ds = ray.data.from_numpy(users)                       # column "data": one (d,) vector per row
    scored = ds.map_batches(**map_batches_args(items, k=100, column="data", concurrency=2))
    scored.write_parquet("out/")                          # columns topk_indices, topk_scores, ...
"""

from __future__ import annotations

import numpy as np

from .. import validation
from .worker import canonical

__all__ = ["TopKScorer", "map_batches_args"]

OUTPUT_COLUMNS = ("topk_indices", "topk_scores", "topk_probs", "log_normalizer")


class TopKScorer:
    """Top-k + softmax normaliser of each row's user vector, as new columns of the batch.

    Parameters
    ----------
    items : array-like (I, d), ObjectRef of one, or ItemIndex
        The catalogue (an object reference is fetched zero-copy from the object store).
    k : int
    column : str
        Column holding the user vectors (a (n, d) tensor column, or n vectors of length d).
    exclude_column : str, optional
        Column holding each row's excluded item ids (a list/array per row).
    temperature, backend, item_block, num_threads
        As in :func:`mmrec_fast.topk`; give ``num_threads`` = the ``num_cpus`` of each map actor.
    keep_vectors : bool
        Keep the user-vector column in the output (default: drop it).

    Returns (per call)
    ------------------
    The batch's other columns, plus ``topk_indices`` (n, k) int64, ``topk_scores`` (n, k) float32,
    ``topk_probs`` (n, k) float32 and ``log_normalizer`` (n,) float64.
    """

    def __init__(
        self,
        items,
        k,
        *,
        column="embedding",
        exclude_column=None,
        temperature=1.0,
        backend="auto",
        item_block=None,
        num_threads=None,
        keep_vectors=False,
    ):
        from ..index import ItemIndex
        from ._ray import require_ray

        if type(items).__name__ == "ObjectRef":
            items = require_ray().get(items)
        self.index = items if isinstance(items, ItemIndex) else ItemIndex(items, backend=backend, item_block=item_block)
        self.k = validation.check_k(k)
        self.temperature = validation.check_temperature(temperature)
        self.column, self.exclude_column = column, exclude_column
        self.num_threads, self.keep_vectors = num_threads, keep_vectors

    def __call__(self, batch: dict) -> dict:
        if self.column not in batch:
            raise ValueError(f"column: {self.column!r} is not in the batch (columns: {sorted(batch)})")
        vectors = batch[self.column]
        if isinstance(vectors, np.ndarray) and vectors.dtype == object:
            vectors = np.stack(list(vectors)) if len(vectors) else np.zeros((0, self.index.dim), np.float32)
        exclude = None
        if self.exclude_column is not None:
            rows = [canonical(np.asarray(row, dtype=np.int64).ravel(), np.int64) for row in batch[self.exclude_column]]
            indptr = np.zeros(len(rows) + 1, dtype=np.int64)
            np.cumsum([row.size for row in rows], out=indptr[1:])
            exclude = (indptr, canonical(np.concatenate(rows), np.int64) if rows else np.zeros(0, np.int64))
        result = self.index.topk(
            vectors, self.k, exclude=exclude, temperature=self.temperature, num_threads=self.num_threads
        )
        out = {name: value for name, value in batch.items() if self.keep_vectors or name != self.column}
        out.update(
            topk_indices=result.indices,
            topk_scores=result.scores,
            topk_probs=result.probs,
            log_normalizer=result.log_normalizer,
        )
        return out


def map_batches_args(
    items,
    k,
    *,
    column="embedding",
    exclude_column=None,
    temperature=1.0,
    backend="auto",
    item_block=None,
    concurrency=None,
    num_cpus=1,
    num_gpus=0,
    batch_size=1024,
    keep_vectors=False,
) -> dict:
    """Keyword arguments for ``Dataset.map_batches`` running :class:`TopKScorer`, validated on the driver.

    The items are validated here and put into the object store once; each map actor reads them
    zero-copy and prepares its index once. ``concurrency``: map actors (default: cluster CPUs //
    ``num_cpus``); each runs the engine with ``num_threads = num_cpus``.
    """
    from ..backends import get_backend
    from . import cluster
    from .plan import check_count

    items = validation.as_float_matrix(items, "items")
    k = validation.check_k(k)
    temperature = validation.check_temperature(temperature)
    backend = get_backend(backend).name
    num_cpus = check_count(num_cpus, "num_cpus", allow_none=False)
    batch_size = check_count(batch_size, "batch_size", allow_none=False)
    concurrency = check_count(concurrency, "concurrency")
    if not isinstance(column, str):
        raise ValueError(f"column: expected a column name, got {column!r}")
    ray = cluster.init()
    concurrency = concurrency or max(1, cluster.cluster_cpus() // num_cpus)
    kwargs = dict(
        items=ray.put(items),
        k=k,
        column=column,
        exclude_column=exclude_column,
        temperature=temperature,
        backend=backend,
        item_block=item_block,
        num_threads=num_cpus,
        keep_vectors=keep_vectors,
    )
    return dict(
        fn=TopKScorer,
        fn_constructor_kwargs=kwargs,
        batch_format="numpy",
        batch_size=batch_size,
        concurrency=concurrency,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
    )
