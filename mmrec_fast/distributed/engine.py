"""RayTopK: the engine's top-k sharded over a Ray cluster (users in batches, items in shards).

The driver validates everything, puts the items into the object store once (one object per item
shard), starts worker actors that each build an :class:`~mmrec_fast.ItemIndex` of their shard once, and
streams user batches through them (:mod:`.scheduler`). Results come back batch by batch, in user order:
as an iterator, into a Parquet file, or -- only when asked -- assembled into one :class:`~mmrec_fast.TopK`.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass

import numpy as np
from tqdm.auto import tqdm

from .. import validation
from ..backends import BlockConfig, get_backend
from ..result import TopK
from . import cluster
from .parquet import ParquetSink
from .plan import (
    DEFAULT_MAX_SHARD_BYTES,
    Query,
    check_count,
    item_shard_bounds,
    prepare_query,
    resolve_item_shards,
    shard_alignment,
)
from .pool import WorkerPool
from .scheduler import RunStats, run_batches

__all__ = ["RayTopK", "topk", "iter_topk", "topk_to_parquet"]

_GPU_BACKENDS = ("cuda", "cupy", "torch")  # none is registered yet: num_gpus="auto" reserves no GPU today


@dataclass(frozen=True)
class _Catalogue:
    """Items and options, validated on the driver before Ray is touched."""

    items: np.ndarray
    max_norm: float
    backend: str
    n_shards: int
    item_block: int | None
    user_block: int | None
    num_workers: int | None
    cpus_per_worker: int | None
    num_gpus: object
    max_restarts: int
    max_retries: int
    in_flight_per_worker: int

    @classmethod
    def validate(
        cls,
        items,
        *,
        backend="auto",
        item_shards="auto",
        max_shard_bytes=DEFAULT_MAX_SHARD_BYTES,
        item_block=None,
        user_block=None,
        num_workers=None,
        cpus_per_worker=None,
        num_gpus="auto",
        max_restarts=3,
        max_retries=3,
        in_flight_per_worker=2,
    ):
        items = validation.as_float_matrix(items, "items")
        BlockConfig(user_block=user_block, item_block=item_block)  # ValueError naming the field
        if num_gpus != "auto" and (
            isinstance(num_gpus, bool) or not isinstance(num_gpus, numbers.Real) or not num_gpus >= 0
        ):
            raise ValueError(f"num_gpus: expected a number >= 0 or 'auto', got {num_gpus!r}")
        return cls(
            items=items,
            max_norm=validation.max_row_norm(items),
            backend=get_backend(backend).name,  # resolved once here: every worker runs the same engine
            n_shards=resolve_item_shards(item_shards, items.nbytes, max_shard_bytes),
            item_block=item_block,
            user_block=user_block,
            num_workers=check_count(num_workers, "num_workers"),
            cpus_per_worker=check_count(cpus_per_worker, "cpus_per_worker"),
            num_gpus=num_gpus,
            max_restarts=check_count(max_restarts, "max_restarts", allow_none=False, minimum=0),
            max_retries=check_count(max_retries, "max_retries", allow_none=False, minimum=0),
            in_flight_per_worker=check_count(in_flight_per_worker, "in_flight_per_worker", allow_none=False),
        )


class RayTopK:
    """Item catalogue prepared on Ray workers; query it with batches of users many times.

    Parameters
    ----------
    items : array-like (I, d)
        Item embeddings (validated here, then put into the object store once per item shard).
    num_workers : int, optional
        Worker actors in all (rounded down to a multiple of the item shards, at least one per shard).
        ``None``: one per alive node, at least one per shard.
    cpus_per_worker : int, optional
        CPUs each worker reserves *and* the engine threads it runs (``num_threads``): threads never
        exceed reserved cores, so workers sharing a node do not oversubscribe it. ``None``: the
        cluster's CPUs divided evenly among the workers.
    num_gpus : float or "auto"
        GPUs each worker reserves. "auto": one GPU (or an even share) per worker when the cluster has
        GPUs *and* the engine has a GPU backend; 0 otherwise (the CPU kernels would leave it idle).
    item_shards : int or "auto"
        Split the catalogue into this many contiguous item shards (each worker holds one shard; a user
        batch visits one worker of every shard and the partial results merge exactly). "auto": enough
        shards that each holds at most ``max_shard_bytes`` of float32 items.
    backend, item_block, user_block
        As in :func:`mmrec_fast.topk` ("auto" is resolved on the driver, so every worker runs the same
        engine and results do not depend on which worker answered).
    max_restarts : int
        Times Ray restarts a dead worker (re-running its ``__init__``); beyond, it is replaced.
    max_retries : int
        Times one batch may be resubmitted after infrastructure failures before the run fails.
    in_flight_per_worker : int
        Batches queued on each worker (2: one running, one waiting, so a worker never idles).
    ready_timeout : float
        Seconds to wait for the workers to start and build their index (``TimeoutError`` beyond:
        e.g. their CPUs are held by another engine's actors).
    address : str, optional
        Ray cluster address; ``None``: the running Ray, ``$RAY_ADDRESS``, or a local Ray started here.
    ray_init_kwargs : dict, optional
        Passed to ``ray.init`` when this call starts or connects Ray.

    Examples
    --------
    >>> import numpy as np
    >>> from mmrec_fast.distributed import RayTopK
    >>> rng = np.random.default_rng(0)
    >>> users, items = rng.normal(size=(1000, 32)), rng.normal(size=(50_000, 32))
    >>> with RayTopK(items, num_workers=2, cpus_per_worker=1) as engine:   # doctest: +SKIP
    ...     top = engine.topk(users, k=10)                                  # everything, assembled
    ...     for batch in engine.iter_batches(users, k=10):                  # or batch by batch
    ...         batch.start, batch.stop, batch.result.indices
    ...     engine.to_parquet("top10.parquet", users, k=10, progress=True)  # or straight to a file
    """

    def __init__(
        self,
        items,
        *,
        num_workers=None,
        cpus_per_worker=None,
        num_gpus="auto",
        item_shards="auto",
        max_shard_bytes=DEFAULT_MAX_SHARD_BYTES,
        backend="auto",
        item_block=None,
        user_block=None,
        max_restarts=3,
        max_retries=3,
        in_flight_per_worker=2,
        ready_timeout=300.0,
        address=None,
        ray_init_kwargs=None,
    ):
        catalogue = (
            items
            if isinstance(items, _Catalogue)
            else _Catalogue.validate(
                items,
                backend=backend,
                item_shards=item_shards,
                max_shard_bytes=max_shard_bytes,
                item_block=item_block,
                user_block=user_block,
                num_workers=num_workers,
                cpus_per_worker=cpus_per_worker,
                num_gpus=num_gpus,
                max_restarts=max_restarts,
                max_retries=max_retries,
                in_flight_per_worker=in_flight_per_worker,
            )
        )
        self._catalogue = catalogue
        self._shape = catalogue.items.shape
        self._pool = None
        self.last_stats: RunStats | None = None
        ray = cluster.init(address, **(ray_init_kwargs or {}))

        align = shard_alignment(catalogue.backend, catalogue.item_block)
        n_shards = len(item_shard_bounds(catalogue.items.shape[0], catalogue.n_shards, align))
        wanted = catalogue.num_workers or max(cluster.alive_nodes(), n_shards)
        self.replicas = max(1, wanted // n_shards)
        n_workers = self.replicas * n_shards
        total_cpus = cluster.cluster_cpus()
        cpus = catalogue.cpus_per_worker or max(1, total_cpus // n_workers)
        if n_workers * cpus > total_cpus:
            raise ValueError(
                f"num_workers: {n_workers} workers x {cpus} CPUs exceed the cluster's {total_cpus} "
                "CPUs (they would wait forever); use fewer workers or cpus_per_worker"
            )
        gpus = catalogue.num_gpus
        if gpus == "auto":
            total_gpus = cluster.cluster_gpus()
            gpu_engine = catalogue.backend in _GPU_BACKENDS
            gpus = min(1.0, total_gpus / n_workers) if (total_gpus and gpu_engine) else 0
        self.cpus_per_worker, self.gpus_per_worker = cpus, gpus
        self.shard_bounds = item_shard_bounds(catalogue.items.shape[0], n_shards, align)
        # One object per shard: a worker fetches (zero-copy on its node) only the shard it serves.
        self._shard_refs = [(lo, ray.put(catalogue.items[lo:hi])) for lo, hi in self.shard_bounds]
        # The object store holds the items now: drop the driver's reference (its float32 copy, if any).
        self._catalogue = catalogue = dataclasses.replace(catalogue, items=None)
        try:
            self._pool = WorkerPool(
                self._shard_refs,
                replicas=self.replicas,
                backend=catalogue.backend,
                item_block=catalogue.item_block,
                user_block=catalogue.user_block,
                num_threads=cpus,
                num_cpus=cpus,
                num_gpus=gpus,
                max_restarts=catalogue.max_restarts,
            )
            self._pool.wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    # -- properties ---------------------------------------------------------------------------------------
    @property
    def n_items(self) -> int:
        return self._shape[0]

    @property
    def dim(self) -> int:
        return self._shape[1]

    @property
    def n_shards(self) -> int:
        return len(self.shard_bounds)

    @property
    def backend(self) -> str:
        return self._catalogue.backend

    @property
    def pool(self):
        """The :class:`~mmrec_fast.distributed.pool.WorkerPool` (actor handles, pids, restarts)."""
        return self._pool

    # -- queries ------------------------------------------------------------------------------------------
    def prepare(self, users, k, *, exclude=None, temperature=1.0, batch_size=None) -> Query:
        """Validate a query on the driver (``ValueError`` naming the argument) and cut its batches."""
        query = prepare_query(
            users,
            k,
            exclude=exclude,
            temperature=temperature,
            n_items=self.n_items,
            dim=self.dim,
            items_max_norm=self._catalogue.max_norm,
            batch_size=batch_size,
        )
        per_shard = max(1, self.n_items // self.n_shards)
        return query.cut(per_shard, self.replicas)

    def iter_batches(self, users, k, *, exclude=None, temperature=1.0, batch_size=None, progress=False):
        """Results batch by batch, in user order: an iterator of :class:`UserBatch` (``start``, ``stop``,
        ``result`` a :class:`~mmrec_fast.TopK` of those users). Arguments as :func:`mmrec_fast.topk`;
        ``batch_size``: users per batch (default: ~1-2 s of work each). Validated now, run lazily."""
        query = self.prepare(users, k, exclude=exclude, temperature=temperature, batch_size=batch_size)
        return self._run(query, progress)

    def _run(self, query: Query, progress: bool):
        if self._pool is None:
            raise RuntimeError("this RayTopK is closed")
        stats = self.last_stats = RunStats()
        window = 2 * self.replicas * self._catalogue.in_flight_per_worker
        bar = tqdm(total=query.users.shape[0], unit="user", desc="ray topk", disable=not progress)

        def generate():
            with bar:
                yield from run_batches(
                    self._pool,
                    query,
                    per_worker=self._catalogue.in_flight_per_worker,
                    window=window,
                    max_retries=self._catalogue.max_retries,
                    stats=stats,
                    bar=bar,
                )

        return generate()

    def topk(self, users, k, *, exclude=None, temperature=1.0, batch_size=None, progress=False) -> TopK:
        """The whole result in driver memory (U x k): same as :func:`mmrec_fast.topk` on one machine."""
        query = self.prepare(users, k, exclude=exclude, temperature=temperature, batch_size=batch_size)
        return _assemble(self._run(query, progress), query)

    def to_parquet(
        self, path, users, k, *, exclude=None, temperature=1.0, batch_size=None, progress=False, compression="snappy"
    ) -> RunStats:
        """Stream the result into a Parquet file (one row group per batch); the driver holds one batch."""
        query = self.prepare(users, k, exclude=exclude, temperature=temperature, batch_size=batch_size)
        with ParquetSink(path, query.k, query.temperature, compression=compression) as sink:
            for batch in self._run(query, progress):
                sink.write(batch)
        return self.last_stats

    # -- lifetime -----------------------------------------------------------------------------------------
    def pids(self) -> list[list[int | None]]:
        """Process id of every worker, by item shard then replica."""
        return self._pool.pids()

    def close(self) -> None:
        """Stop the workers and release the items (the Ray instance itself stays up for reuse)."""
        if self._pool is not None:
            self._pool.close()
        self._pool = None
        self._shard_refs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self) -> str:
        return (
            f"RayTopK(n_items={self.n_items}, dim={self.dim}, item_shards={self.n_shards}, "
            f"workers={self.replicas * self.n_shards}, cpus_per_worker={self.cpus_per_worker}, "
            f"backend={self.backend!r})"
        )


def _assemble(batches, query: Query) -> TopK:
    n_users = query.users.shape[0]
    indices = np.full((n_users, query.k), -1, dtype=np.int64)
    scores = np.full((n_users, query.k), -np.inf, dtype=np.float32)
    lse = np.full(n_users, -np.inf, dtype=np.float64)
    for batch in batches:
        indices[batch.start : batch.stop] = batch.result.indices
        scores[batch.start : batch.stop] = batch.result.scores
        lse[batch.start : batch.stop] = batch.result.log_normalizer
    return TopK(indices, scores, lse, query.temperature)


_ENGINE_OPTIONS = (
    "num_workers",
    "cpus_per_worker",
    "num_gpus",
    "item_shards",
    "max_shard_bytes",
    "backend",
    "item_block",
    "user_block",
    "max_restarts",
    "max_retries",
    "in_flight_per_worker",
)


def _validated(users, items, k, exclude, temperature, batch_size, options):
    """Catalogue and query validated together, before Ray is started or anything is put."""
    unknown = set(options) - set(_ENGINE_OPTIONS) - {"address", "ray_init_kwargs"}
    if unknown:
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    catalogue = _Catalogue.validate(items, **{key: options[key] for key in _ENGINE_OPTIONS if key in options})
    prepare_query(
        users,
        k,
        exclude=exclude,
        temperature=temperature,
        n_items=catalogue.items.shape[0],
        dim=catalogue.items.shape[1],
        items_max_norm=catalogue.max_norm,
        batch_size=batch_size,
    )
    return catalogue


def topk(users, items, k, *, exclude=None, temperature=1.0, batch_size=None, progress=False, **options) -> TopK:
    """:func:`mmrec_fast.topk` on Ray: start workers, run, assemble, stop workers. ``options``: those of
    :class:`RayTopK`. The whole U x k result is returned (use :func:`iter_topk` or
    :func:`topk_to_parquet` to keep the driver's memory independent of U)."""
    catalogue = _validated(users, items, k, exclude, temperature, batch_size, options)
    with RayTopK(catalogue, address=options.get("address"), ray_init_kwargs=options.get("ray_init_kwargs")) as eng:
        return eng.topk(users, k, exclude=exclude, temperature=temperature, batch_size=batch_size, progress=progress)


def iter_topk(users, items, k, *, exclude=None, temperature=1.0, batch_size=None, progress=False, **options):
    """Like :func:`topk`, but an iterator of :class:`UserBatch` in user order; the workers stop when it
    is exhausted or closed. Everything is validated when called, before the first batch is asked for."""
    catalogue = _validated(users, items, k, exclude, temperature, batch_size, options)
    engine = RayTopK(catalogue, address=options.get("address"), ray_init_kwargs=options.get("ray_init_kwargs"))
    try:
        batches = engine.iter_batches(
            users, k, exclude=exclude, temperature=temperature, batch_size=batch_size, progress=progress
        )
    except BaseException:
        engine.close()
        raise

    def generate():
        try:
            yield from batches
        finally:
            engine.close()

    return generate()


def topk_to_parquet(
    path,
    users,
    items,
    k,
    *,
    exclude=None,
    temperature=1.0,
    batch_size=None,
    progress=False,
    compression="snappy",
    **options,
) -> RunStats:
    """Like :func:`topk`, streamed into a Parquet file (see :class:`~mmrec_fast.distributed.ParquetSink`)."""
    catalogue = _validated(users, items, k, exclude, temperature, batch_size, options)
    with RayTopK(catalogue, address=options.get("address"), ray_init_kwargs=options.get("ray_init_kwargs")) as eng:
        return eng.to_parquet(
            path,
            users,
            k,
            exclude=exclude,
            temperature=temperature,
            batch_size=batch_size,
            progress=progress,
            compression=compression,
        )
