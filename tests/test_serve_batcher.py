"""The micro-batcher alone (no HTTP): who is batched with whom, caps, errors, shutdown."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi", reason="the [serve] extra is not installed (pip install 'mmrec_fast[serve]')")

from mmrec_fast.serve.batcher import MicroBatcher  # noqa: E402


def _run(coro):
    return asyncio.run(coro)


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, queries):
        self.calls.append(list(queries))
        return [ValueError(f"bad {q}") if q == "bad" else q * 2 for q in queries]


def test_concurrent_queries_share_one_engine_call():
    rec = _Recorder()

    async def main():
        batcher = MicroBatcher(rec, max_batch=64, max_wait=0.1, arriving=lambda: 10)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return results

    assert _run(main()) == [2 * i for i in range(10)]
    assert rec.calls == [list(range(10))]


def test_max_batch_caps_a_call_and_the_rest_follow():
    rec = _Recorder()

    async def main():
        batcher = MicroBatcher(rec, max_batch=4, max_wait=0.1, arriving=lambda: 10)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
        await batcher.stop()
        return results

    assert _run(main()) == [2 * i for i in range(10)]
    assert [len(c) for c in rec.calls] == [4, 4, 2]
    assert sum(rec.calls, []) == list(range(10))


def test_nothing_on_its_way_means_no_waiting_for_company():
    rec = _Recorder()

    async def main():
        # Only the one request is in the server: it goes out alone even though max_wait is long and a
        # second query is submitted right after (that one forms its own batch).
        batcher = MicroBatcher(rec, max_batch=64, max_wait=0.1, arriving=lambda: 1)
        batcher.start()
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        second = await batcher.submit(2)
        out = [await first, second]
        await batcher.stop()
        return out

    assert _run(main()) == [2, 4]
    assert rec.calls[0] == [1]


def test_an_error_result_fails_only_its_query():
    rec = _Recorder()

    async def main():
        batcher = MicroBatcher(rec, max_batch=8, max_wait=0.01, arriving=lambda: 3)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(q) for q in (1, "bad", 3)), return_exceptions=True)
        await batcher.stop()
        return results

    ok1, bad, ok3 = _run(main())
    assert (ok1, ok3) == (2, 6) and isinstance(bad, ValueError)


def test_disabled_batching_is_one_call_per_query():
    rec = _Recorder()

    async def main():
        batcher = MicroBatcher(rec, enabled=False, threads=2)
        batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(5)))
        await batcher.stop()
        return results

    assert _run(main()) == [0, 2, 4, 6, 8]
    assert sorted(len(c) for c in rec.calls) == [1] * 5


def test_bad_settings_and_submit_after_stop():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(_Recorder(), max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(_Recorder(), max_wait=1.0)

    async def main():
        batcher = MicroBatcher(_Recorder())
        batcher.start()
        await batcher.stop()
        with pytest.raises(RuntimeError, match="not running"):
            await batcher.submit(1)

    _run(main())
