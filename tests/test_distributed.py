"""The Ray scale-out (mmrec_fast.distributed) against the single-process engine, on a local 2-CPU Ray.

One local Ray per module (start-up is slow), shut down at the end. Results must be identical to
``mmrec_fast.topk``: ids and scores bitwise; the normaliser bitwise when batches have >= 512 users and
the items are not sharded, else equal up to float rounding (log-add-exp across shards). A worker
killed midway (Ray kill with restart, SIGKILL of its process, kill without restart) must not change
the result, and its batches must be retried.
"""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

ray = pytest.importorskip("ray")
pytest.importorskip("pyarrow")

import mmrec_fast.distributed as mfd  # noqa: E402
from mmrec_fast.distributed import engine as dist_engine  # noqa: E402
from mmrec_fast.distributed.plan import default_batch_size, item_shard_bounds  # noqa: E402

WORKERS = dict(num_workers=2, cpus_per_worker=1)  # 2 workers x 1 thread on the 2 CPUs of the test Ray


@pytest.fixture(scope="module")
def cluster():
    mfd.init(num_cpus=2, num_gpus=0, log_to_driver=False)
    yield ray
    mfd.shutdown()


def assert_identical(result, expected, *, exact_lse=True):
    np.testing.assert_array_equal(result.indices, expected.indices)
    np.testing.assert_array_equal(result.scores, expected.scores)
    if exact_lse:
        np.testing.assert_array_equal(result.log_normalizer, expected.log_normalizer)
    else:  # float rounding of a different summation order, in float64
        np.testing.assert_allclose(result.log_normalizer, expected.log_normalizer, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(result.probs, expected.probs, rtol=1e-6, atol=0)


def test_import_does_not_import_ray():
    code = "import sys, mmrec_fast, mmrec_fast.distributed; sys.exit('ray' in sys.modules or 'pyarrow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_plan_helpers():
    bounds = item_shard_bounds(1000, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == 1000
    assert all(lo % 16 == 0 and hi > lo for lo, hi in bounds)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    assert item_shard_bounds(5, 4) == [(0, 5)]  # never an empty shard
    size = default_batch_size(20_000, 1_000_000, 64, 2)
    assert size >= 512 and -(-20_000 // size) % 2 == 0  # >= 512 users, an even number of batches


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(1234)
    users, items = random_problem(rng, 1500, 6000, 16)
    exclude = random_exclusion(rng, 1500, 6000, density=0.01, full_rows=(3,))
    return users, items, exclude


@pytest.fixture
def engine(cluster, problem):  # per test: its workers hold both CPUs, other engines need them
    with mfd.RayTopK(problem[1], **WORKERS) as eng:
        yield eng


def test_users_sharded_identical(engine, problem):
    users, items, exclude = problem
    expected = mf.topk(users, items, 20, exclude=exclude, temperature=0.5)
    result = engine.topk(users, 20, exclude=exclude, temperature=0.5, batch_size=512)
    assert_identical(result, expected)
    assert engine.last_stats.batches == 3 and engine.last_stats.retried_parts == 0
    assert_topk_matches(result, users, items, 20, exclude=exclude, temperature=0.5)
    # Small batches (< 512 users) take the native kernel's item-split path: same ids and scores.
    small = engine.topk(users, 20, exclude=exclude, temperature=0.5, batch_size=100)
    assert_identical(small, expected, exact_lse=False)


def test_items_sharded_identical(cluster, problem):
    users, items, exclude = problem
    expected = mf.topk(users, items, 20, exclude=exclude, temperature=0.5)
    with mfd.RayTopK(items, item_shards=2, **WORKERS) as eng:
        assert eng.n_shards == 2 and eng.shard_bounds == [(0, 3072), (3072, 6000)]  # on item blocks
        result = eng.topk(users, 20, exclude=exclude, temperature=0.5)
    assert_identical(result, expected, exact_lse=False)


def test_items_sharded_padding_and_empty_rows(cluster, rng):
    # k larger than a shard and than some users' eligible items; a user with nothing eligible.
    users, items = random_problem(rng, 40, 60, 4)
    exclude = random_exclusion(rng, 40, 60, density=0.5, full_rows=(0, 7))
    expected = mf.topk(users, items, 45, exclude=exclude, item_block=16)
    with mfd.RayTopK(items, item_shards=2, item_block=16, **WORKERS) as eng:
        assert eng.shard_bounds == [(0, 32), (32, 60)]
        result = eng.topk(users, 45, exclude=exclude, batch_size=7)
    assert_identical(result, expected, exact_lse=False)
    assert np.isneginf(result.log_normalizer[[0, 7]]).all() and (result.indices[0] == -1).all()
    assert_topk_matches(result, users, items, 45, exclude=exclude)


@pytest.mark.slow
def test_issue_scale_identical(cluster):
    """U=20k, I=200k, d=64, k=100, with and without item sharding, against the single-process engine."""
    rng = np.random.default_rng(7)
    users, items = random_problem(rng, 20_000, 200_000, 64)
    expected = mf.topk(users, items, 100)
    with mfd.RayTopK(items, **WORKERS) as eng:
        assert_identical(eng.topk(users, 100), expected)
    with mfd.RayTopK(items, item_shards=2, **WORKERS) as eng:
        assert_identical(eng.topk(users, 100), expected, exact_lse=False)


def test_iterator_streams_in_order(engine, problem):
    users, items, exclude = problem
    expected = mf.topk(users, items, 10, exclude=exclude)
    batches = engine.iter_batches(users, 10, exclude=exclude, batch_size=64, progress=True)
    stop = 0
    for batch in batches:
        assert batch.start == stop and batch.batch_id == batch.start // 64
        np.testing.assert_array_equal(batch.result.indices, expected.indices[batch.start : batch.stop])
        stop = batch.stop
    assert stop == users.shape[0]
    stats = engine.last_stats
    assert stats.batches == 24 and stats.parts_submitted == 24
    window = 2 * engine.replicas * 2
    assert stats.max_buffered_batches <= window  # the driver never holds more than the window


def test_parquet_and_one_shot_functions(cluster, problem, tmp_path):
    users, items, exclude = problem
    expected = mf.topk(users, items, 15, exclude=exclude, temperature=2.0)
    stats = mfd.topk_to_parquet(
        tmp_path / "top.parquet", users, items, 15, exclude=exclude, temperature=2.0, batch_size=512, **WORKERS
    )
    assert stats.batches == 3
    back = mfd.read_topk_parquet(tmp_path / "top.parquet")
    assert_identical(back, expected)
    np.testing.assert_array_equal(back.probs, expected.probs)
    one_shot = mfd.topk(users[:600], items, 15, exclude=exclude[:600], temperature=2.0, **WORKERS)
    assert_identical(one_shot, mf.topk(users[:600], items, 15, exclude=exclude[:600], temperature=2.0))
    first = next(mfd.iter_topk(users, items, 15, batch_size=700, **WORKERS))
    np.testing.assert_array_equal(first.result.indices, mf.topk(users[:700], items, 15).indices)


def _busy_slot(eng):
    slots = [slot for slot in eng.pool.all_slots() if slot.in_flight > 0]
    return slots[0] if slots else eng.pool.all_slots()[0]


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL", "no_restart"])
def test_killed_worker_midway(cluster, how):
    rng = np.random.default_rng(99)
    users, items = random_problem(rng, 5120, 150_000, 64)
    exclude = random_exclusion(rng, 5120, 150_000, density=1e-4)
    expected = mf.topk(users, items, 50, exclude=exclude)
    with mfd.RayTopK(items, **WORKERS) as eng:
        batches = eng.iter_batches(users, 50, exclude=exclude, batch_size=512)  # 10 batches, ~0.2 s each
        got = [next(batches)]
        victim = _busy_slot(eng)  # a worker with a batch in flight
        old_pid = victim.pid
        if how == "ray.kill":
            ray.kill(victim.actor, no_restart=False)
        elif how == "SIGKILL":
            os.kill(victim.pid, signal.SIGKILL)
        else:
            ray.kill(victim.actor, no_restart=True)
        got.extend(batches)
        eng.pool.recover()  # the other worker may have finished the run before the victim was back
        stats = eng.last_stats
        assert [b.batch_id for b in got] == list(range(10))  # none lost, none twice
        assert stats.retried_parts >= 1 and stats.duplicate_parts_dropped == 0, stats
        if how == "no_restart":
            assert eng.pool.replaced == 1
        else:
            assert eng.pool.restarted + eng.pool.replaced >= 1
        assert victim.pid != old_pid
        result = dist_engine._assemble(iter(got), eng.prepare(users, 50, exclude=exclude, batch_size=512))
        assert_identical(result, expected)
        # The repaired pool keeps answering.
        assert_identical(
            eng.topk(users[:512], 50, exclude=exclude[:512]), mf.topk(users[:512], items, 50, exclude=exclude[:512])
        )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # from inside Ray Data
def test_ray_data_map_batches(cluster, problem):
    users, items, exclude = problem
    n = 1000
    expected = mf.topk(users[:n], items, 10, exclude=exclude[:n])
    seen = [exclude.indices[exclude.indptr[i] : exclude.indptr[i + 1]] for i in range(n)]
    ds = ray.data.from_items([{"id": i, "embedding": users[i], "seen": seen[i]} for i in range(n)])
    scored = ds.map_batches(**mfd.map_batches_args(items, 10, exclude_column="seen", batch_size=256, concurrency=2))
    rows = sorted(scored.take_all(), key=lambda row: row["id"])
    assert len(rows) == n and "embedding" not in rows[0]
    np.testing.assert_array_equal(np.stack([row["topk_indices"] for row in rows]), expected.indices)
    np.testing.assert_array_equal(np.stack([row["topk_scores"] for row in rows]), expected.scores)
    np.testing.assert_allclose([row["log_normalizer"] for row in rows], expected.log_normalizer, rtol=1e-12)


BAD_QUERIES = [
    (dict(k=0), "k:"),
    (dict(temperature=0.0), "temperature:"),
    (dict(users="nan"), "users:"),
    (dict(users="dim"), "users:"),
    (dict(exclude="range"), "exclude:"),
    (dict(exclude="shape"), "exclude:"),
    (dict(batch_size=0), "batch_size:"),
]
BAD_OPTIONS = [
    (dict(items="inf"), "items:"),
    (dict(item_shards=0), "item_shards:"),
    (dict(num_workers=0), "num_workers:"),
    (dict(cpus_per_worker=-1), "cpus_per_worker:"),
    (dict(backend="bogus"), "backend:"),
    (dict(num_gpus=-1), "num_gpus:"),
    (dict(max_restarts=-1), "max_restarts:"),
    (dict(item_block=0), "item_block:"),
]


def _bad_args(problem, change):
    import scipy.sparse as sp

    users, items, exclude = problem
    users, items = users[:50], items[:200]
    args = dict(users=users, items=items, k=5, exclude=None)
    args.update(change)
    marker = {key: value for key, value in args.items() if isinstance(value, str)}
    if marker.get("users") == "nan":
        args["users"] = users.copy()
        args["users"][3, 1] = np.nan
    elif marker.get("users") == "dim":
        args["users"] = users[:, :5]
    if marker.get("items") == "inf":
        args["items"] = items.copy()
        args["items"][7, 0] = np.inf
    if marker.get("exclude") == "range":
        args["exclude"] = (np.array([0, 1] + [1] * 49), np.array([10**7]))
    elif marker.get("exclude") == "shape":
        args["exclude"] = sp.csr_matrix((50, 199))
    return args


@pytest.mark.parametrize("change, name", BAD_QUERIES + BAD_OPTIONS)
def test_bad_inputs_rejected_before_submission(cluster, problem, monkeypatch, change, name):
    def forbidden(*args, **kwargs):
        raise AssertionError("work was submitted before validation finished")

    monkeypatch.setattr(dist_engine, "RayTopK", forbidden)  # the one-shot functions construct no engine
    args = _bad_args(problem, change)
    for call in (mfd.topk, mfd.iter_topk):
        with pytest.raises(ValueError, match=f"^{name}"):
            call(**args)


def test_engine_rejects_bad_queries_before_submission(engine, problem, monkeypatch):
    monkeypatch.setattr(dist_engine, "run_batches", lambda *a, **k: pytest.fail("batches were submitted"))
    for change, name in BAD_QUERIES:
        args = _bad_args(problem, change)
        args.pop("items")
        for method in (engine.iter_batches, engine.topk):
            with pytest.raises(ValueError, match=f"^{name}"):
                method(
                    args["users"],
                    args["k"],
                    exclude=args["exclude"],
                    **{key: args[key] for key in ("temperature", "batch_size") if key in args},
                )
    assert engine.last_stats is None  # nothing ran


def test_cluster_too_small_and_map_batches_validation(cluster, problem):
    _, items, _ = problem
    with pytest.raises(ValueError, match="^num_workers:"):
        mfd.RayTopK(items, num_workers=3, cpus_per_worker=1)
    with pytest.raises(ValueError, match="^k:"):
        mfd.map_batches_args(items, 0)
    bad = items.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="^items:"):
        mfd.map_batches_args(bad, 5)
    with pytest.raises(TypeError, match="unexpected keyword"):
        mfd.topk(items[:3], items, 5, num_worker=2)


def test_embedded_default_reuses_the_running_ray(cluster):
    # init() with Ray already up (the test's) reuses it; the local default uses this machine's CPUs.
    before = time.monotonic()
    assert mfd.init() is ray and time.monotonic() - before < 1.0
    assert ray.cluster_resources()["CPU"] == 2
