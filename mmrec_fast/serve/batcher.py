"""Micro-batching: concurrent requests gathered into one engine call, run off the event loop.

One batch is in flight at a time, in a single worker thread (the engine itself uses every core). While
it runs, new queries queue up; when it finishes, everything queued (up to ``max_batch``) goes out at
once with no further wait -- those queries have already waited. An idle batcher that receives a query
waits for company only while requests are known to be on their way (received by the server, not yet
queued: ``arriving()``), and never longer than ``max_wait``; a lone client pays no wait at all. With
batching disabled every query is its own engine call on a small thread pool (the A/B baseline).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

__all__ = ["MicroBatcher"]


class MicroBatcher:
    """Gather queries into batches for ``run_batch`` (a function of a list, returning one result each).

    Parameters
    ----------
    run_batch : callable
        ``run_batch(queries) -> list`` of results or exception instances, run in a worker thread.
    enabled : bool
        False: one ``run_batch([query])`` per query, on ``threads`` worker threads.
    max_batch : int
        Largest batch.
    max_wait : float
        Seconds an idle batcher waits for more queries after the first (bounded; default 2 ms).
    threads : int
        Worker threads when batching is disabled.
    on_batch : callable, optional
        ``on_batch(size, seconds)`` after every engine call (metrics).
    arriving : callable, optional
        Number of scoring requests the server is handling now (queued, in the engine, or still being
        parsed); the batcher waits only for the ones not yet queued. ``None``: always wait ``max_wait``.
    """

    def __init__(
        self,
        run_batch: Callable[[list], list],
        *,
        enabled: bool = True,
        max_batch: int = 64,
        max_wait: float = 0.002,
        threads: int = 2,
        on_batch: Callable[[int, float], None] | None = None,
        arriving: Callable[[], int] | None = None,
    ):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not 0 <= max_wait <= 0.1:
            raise ValueError(f"max_wait must be within 0..0.1 s, got {max_wait}")
        self.run_batch, self.enabled = run_batch, bool(enabled)
        self.max_batch, self.max_wait = int(max_batch), float(max_wait)
        self.on_batch, self.arriving = on_batch, arriving
        self._in_engine = 0
        self._executor = ThreadPoolExecutor(max_workers=1 if enabled else max(1, threads), thread_name_prefix="engine")
        self._queue: deque = deque()
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the gathering task on the running event loop."""
        if self.enabled and self._task is None:
            self._wakeup = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Stop gathering, fail what is still queued, and release the worker threads."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=False, cancel_futures=True)

    @property
    def running(self) -> bool:
        """Whether queries can be served (the gathering task is alive, or batching is off)."""
        return not self.enabled or (self._task is not None and not self._task.done())

    def _timed(self, queries: list) -> list:
        start = time.perf_counter()
        results = self.run_batch(queries)
        if self.on_batch is not None:
            self.on_batch(len(queries), time.perf_counter() - start)
        return results

    async def submit(self, query):
        """The result of ``query`` (an exception result is raised)."""
        loop = asyncio.get_running_loop()
        if not self.enabled:
            result = (await loop.run_in_executor(self._executor, self._timed, [query]))[0]
        else:
            if self._task is None or self._task.done():
                raise RuntimeError("the batcher is not running")
            fut = loop.create_future()
            self._queue.append((query, fut))
            self._wakeup.set()
            result = await fut
        if isinstance(result, BaseException):
            raise result
        return result

    def _expect_more(self) -> bool:
        if len(self._queue) >= self.max_batch:
            return False
        if self.arriving is None:
            return True
        return self.arriving() > len(self._queue) + self._in_engine

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        ran_last = False
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
                ran_last = False
            if not ran_last and self.max_wait > 0:
                # Idle until now: give requests already on their way a bounded moment to join.
                deadline = loop.time() + self.max_wait
                while self._expect_more() and loop.time() < deadline:
                    self._wakeup.clear()
                    try:
                        await asyncio.wait_for(self._wakeup.wait(), deadline - loop.time())
                    except asyncio.TimeoutError:
                        break
            batch = []
            while self._queue and len(batch) < self.max_batch:
                query, fut = self._queue.popleft()
                if not fut.done():  # a timed-out or disconnected request is not scored
                    batch.append((query, fut))
            if not batch:
                ran_last = False
                continue
            self._in_engine = len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self._timed, [q for q, _ in batch])
            except Exception as exc:  # a bug in the batch path: fail this batch, keep serving
                results = [exc] * len(batch)
            finally:
                self._in_engine = 0
            for (_, fut), result in zip(batch, results):
                if not fut.done():
                    fut.set_result(result)
            ran_last = True
