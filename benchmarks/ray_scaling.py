"""Ray scale-out vs the single-process native engine, in one run on one machine.

What it does, in one process:

1. Builds U x d users and I x d items (seeded, unit-scale scores as encoders produce).
2. Single process: ``mmrec_fast.topk`` with every core (OpenMP threads = cores); its result is the
   reference for everything below.
3. Ray: a local Ray (``mmrec_fast.distributed.init``), ``RayTopK`` with ``--workers`` actors of
   ``cpus_per_worker = cores // workers`` CPUs each; every worker runs the engine with that many threads
   (1 on a 2-core machine: 2 workers x 1 thread = the cores; with the engine's default of all cores each
   worker would start 2 OpenMP threads, 4 threads on 2 cores, and lose to context switches, spin-waiting
   barriers and a shared L2). Results go straight to Parquet (the driver holds one batch at a time),
   are read back afterwards and compared with the reference: ids and scores bitwise, normaliser exactly.
4. Driver peak memory of the Ray run for two user counts (``--mem-users``, ``--users``, then
   ``--mem-users`` again), after a short warm-up run: the resident-set high-water mark (VmHWM, reset by writing 5 to
   /proc/self/clear_refs) above the resident set just before the run. It includes the pages of Ray's
   shared-memory object store the driver maps (batches out, results in), which level off after the
   first few dozen batches.
5. Item-sharded run (``--shard-users`` users, 2 item shards): ids/scores bitwise, normaliser to rounding.
6. Fault run (``--kill-users`` users): one worker is SIGKILLed after the first batch arrives; the run
   must complete with the reference's result, the lost batches retried.

Printed: ratios (Ray throughput / single-process throughput; steady state with the workers ready, and
end-to-end including starting the workers and packing the items), the driver's peak memory for both
user counts, the machine and the exact command. Timings are comparable within one run only: the
machine may be shared.

Usage::

    python benchmarks/ray_scaling.py                    # U=20k, I=1M, d=64, k=100, 2 workers
    python benchmarks/ray_scaling.py --quick            # U=4k, I=200k: a smoke run (~30 s)
    python benchmarks/ray_scaling.py --json ray.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import mmrec_fast as mf
import mmrec_fast.distributed as mfd


def read_status(field: str) -> int:
    """A VmRSS/VmHWM-style line of /proc/self/status, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak() -> int:
    """Reset VmHWM to the current RSS; return the current RSS."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return read_status("VmRSS")


def machine() -> dict:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import ray

    return dict(
        cpu=model,
        cores=len(os.sched_getaffinity(0)),
        memory_gb=round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        load_avg_at_start=os.getloadavg(),
        python=platform.python_version(),
        numpy=np.__version__,
        ray=ray.__version__,
        backend=mf.available_backends()["native"].detail,
    )


def compare(result, expected) -> dict:
    return dict(
        ids_identical=bool(np.array_equal(result.indices, expected.indices)),
        scores_identical=bool(np.array_equal(result.scores, expected.scores)),
        lse_identical=bool(np.array_equal(result.log_normalizer, expected.log_normalizer)),
        lse_max_abs_diff=float(np.max(np.abs(result.log_normalizer - expected.log_normalizer))),
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--mem-users", type=int, default=5_000, help="second U for the driver-memory check")
    parser.add_argument("--shard-users", type=int, default=10_000, help="users of the item-sharded run (0: skip)")
    parser.add_argument("--kill-users", type=int, default=5_000, help="users of the killed-worker run (0: skip)")
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="U=4k, I=200k (smoke run)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args(argv)
    if args.quick:  # smaller defaults; options given explicitly still win
        parser.set_defaults(users=4_000, items=200_000, mem_users=1_000, shard_users=1_000, kill_users=2_048)
        args = parser.parse_args(argv)
    cores = len(os.sched_getaffinity(0))
    cpus_per_worker = max(1, cores // args.workers)
    out: dict = dict(
        command=" ".join(shlex.quote(a) for a in [sys.executable, *sys.argv]),
        shape=dict(users=args.users, items=args.items, dim=args.dim, k=args.k),
        workers=args.workers,
        cpus_per_worker=cpus_per_worker,
    )

    rng = np.random.default_rng(0)
    scale = np.float32(1 / np.sqrt(args.dim))
    items = rng.standard_normal((args.items, args.dim), dtype=np.float32) * scale
    users = rng.standard_normal((args.users, args.dim), dtype=np.float32) * scale
    flops = 2.0 * args.users * args.items * args.dim

    # -- single process ---------------------------------------------------------------------------
    mf.topk(users[:64], items[:10_000], args.k)  # warm-up (thread pool)
    t = time.perf_counter()
    ref = mf.topk(users, items, args.k)
    single_s = time.perf_counter() - t
    out["single"] = dict(seconds=single_s, users_per_s=args.users / single_s, gflops=flops / single_s / 1e9)

    # -- Ray ----------------------------------------------------------------------------------------
    t = time.perf_counter()
    mfd.init(num_cpus=cores, log_to_driver=False)
    out["machine"] = machine()
    out["ray_start_s"] = time.perf_counter() - t
    tmp = Path(tempfile.mkdtemp(prefix="ray_scaling_"))
    t = time.perf_counter()
    engine = mfd.RayTopK(items, num_workers=args.workers, cpus_per_worker=cpus_per_worker, item_shards=1)
    setup_s = time.perf_counter() - t

    def streamed_run(n_users, name):
        # engine.to_parquet, spelled out so that the driver's private memory (RssAnon) and the pages of
        # Ray's shared-memory object store it has mapped (RssShmem) can be sampled after every batch.
        before = reset_peak()
        anon0, shmem0 = read_status("RssAnon"), read_status("RssShmem")
        anon = shmem = 0
        t0 = time.perf_counter()
        with mfd.ParquetSink(tmp / f"{name}.parquet", args.k, 1.0) as sink:
            for batch in engine.iter_batches(users[:n_users], args.k):
                sink.write(batch)
                anon = max(anon, read_status("RssAnon") - anon0)
                shmem = max(shmem, read_status("RssShmem") - shmem0)
        seconds = time.perf_counter() - t0
        peak = read_status("VmHWM") - before
        stats = engine.last_stats
        back = mfd.read_topk_parquet(tmp / f"{name}.parquet")
        expected = mf.TopK(ref.indices[:n_users], ref.scores[:n_users], ref.log_normalizer[:n_users])
        return dict(
            users=n_users,
            seconds=seconds,
            users_per_s=n_users / seconds,
            batches=stats.batches,
            driver_peak_mb=peak / 2**20,
            private_growth_mb=anon / 2**20,
            shmem_growth_mb=shmem / 2**20,
            **compare(back, expected),
        )

    # Warm-up (a few batches): one-time driver allocations (pyarrow, the Parquet writer, Ray's client
    # buffers, the first pages of the object store it maps) must not count as per-run memory.
    engine.to_parquet(tmp / "warm.parquet", users[: min(args.users, 4_096)], args.k, batch_size=512)
    # Order: small U, large U, small U again. The first long run after start-up still grows the driver
    # once (library code pages, allocator pools, object-store pages first touched); comparing the large
    # run with the small one *after* it shows what depends on U (nothing), the first shows the one-off.
    first_run = streamed_run(args.mem_users, "mem_first")
    main_run = streamed_run(args.users, "main")
    mem_run = streamed_run(args.mem_users, "mem")
    out["ray"] = dict(
        setup_s=setup_s,
        main=main_run,
        second_u=mem_run,
        second_u_first=first_run,
        ratio_steady=main_run["users_per_s"] / out["single"]["users_per_s"],
        ratio_end_to_end=single_s / (main_run["seconds"] + setup_s),
    )

    # -- killed worker ---------------------------------------------------------------------------------
    if args.kill_users:
        n = args.kill_users
        batches = engine.iter_batches(users[:n], args.k, batch_size=max(512, n // 8))
        got = [next(batches)]
        victim = next((s for s in engine.pool.all_slots() if s.in_flight > 0), engine.pool.all_slots()[0])
        os.kill(victim.pid, signal.SIGKILL)
        got.extend(batches)
        stats = engine.last_stats
        merged = mf.TopK(
            np.concatenate([b.result.indices for b in got]),
            np.concatenate([b.result.scores for b in got]),
            np.concatenate([b.result.log_normalizer for b in got]),
        )
        expected = mf.TopK(ref.indices[:n], ref.scores[:n], ref.log_normalizer[:n])
        engine.pool.recover()
        out["kill"] = dict(
            users=n,
            batches=stats.batches,
            batch_ids_in_order=[b.batch_id for b in got] == list(range(stats.batches)),
            retried_parts=stats.retried_parts,
            failures=stats.failures,
            restarted=engine.pool.restarted,
            replaced=engine.pool.replaced,
            **compare(merged, expected),
        )
    engine.close()

    # -- item-sharded -----------------------------------------------------------------------------------
    if args.shard_users:
        n = args.shard_users
        with mfd.RayTopK(items, num_workers=args.workers, cpus_per_worker=cpus_per_worker, item_shards=2) as sharded:
            t = time.perf_counter()
            result = sharded.topk(users[:n], args.k)
            seconds = time.perf_counter() - t
        expected = mf.TopK(ref.indices[:n], ref.scores[:n], ref.log_normalizer[:n])
        out["item_sharded"] = dict(
            users=n,
            shards=2,
            seconds=seconds,
            ratio_steady=(n / seconds) / out["single"]["users_per_s"],
            **compare(result, expected),
        )
    mfd.shutdown()
    for path in tmp.iterdir():
        path.unlink()
    tmp.rmdir()

    # -- report ---------------------------------------------------------------------------------------------
    m, r = out["machine"], out["ray"]
    print(f"command : {out['command']}")
    print(
        f"machine : {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; load avg at start "
        f"{', '.join(f'{x:.2f}' for x in m['load_avg_at_start'])}; python {m['python']}, numpy {m['numpy']}, "
        f"ray {m['ray']}; {m['backend']}"
    )
    print(
        f"shape   : U={args.users:,} I={args.items:,} d={args.dim} k={args.k}; Ray: {args.workers} workers x "
        f"{cpus_per_worker} CPU (engine num_threads={cpus_per_worker}); single process: {cores} threads"
    )
    print(f"throughput ratio Ray / single process, steady state (workers ready):   {r['ratio_steady']:.3f}")
    print(f"throughput ratio Ray / single process, end to end (+ workers, packing): {r['ratio_end_to_end']:.3f}")
    print(
        f"  (one-time costs relative to the single-process run: Ray start {out['ray_start_s'] / single_s:.2f}, "
        f"worker setup {setup_s / single_s:.2f}; single process reached {out['single']['gflops']:.0f} GFLOP/s)"
    )
    print(
        f"identical to single process (U={args.users:,}): ids {main_run['ids_identical']}, scores "
        f"{main_run['scores_identical']}, normaliser {main_run['lse_identical']} "
        f"(max |diff| {main_run['lse_max_abs_diff']:.1e})"
    )
    for label, run in (("1st", first_run), ("2nd", main_run), ("3rd", mem_run)):
        print(
            f"driver memory, {label} run, U={run['users']:,} streamed to Parquet ({run['batches']} batches): peak RSS "
            f"{run['driver_peak_mb']:.1f} MB above the pre-run RSS, of which private (RssAnon, sampled per "
            f"batch) {run['private_growth_mb']:.1f} MB, object-store pages mapped (RssShmem) "
            f"{run['shmem_growth_mb']:.1f} MB"
        )
    print(
        f"  peak difference U={args.users:,} minus U={args.mem_users:,} (2nd - 3rd run): "
        f"{main_run['driver_peak_mb'] - mem_run['driver_peak_mb']:+.1f} MB; holding the U x k result instead "
        f"would differ by {(args.users - args.mem_users) * args.k * 16 / 2**20:.0f} MB"
    )
    if "kill" in out:
        kv = out["kill"]
        print(
            f"killed worker (SIGKILL after the first batch, U={kv['users']:,}): ids {kv['ids_identical']}, scores "
            f"{kv['scores_identical']}, normaliser {kv['lse_identical']}; batches in order, none lost or twice: "
            f"{kv['batch_ids_in_order']}; parts retried {kv['retried_parts']}; workers restarted "
            f"{kv['restarted']}, replaced {kv['replaced']}"
        )
    if "item_sharded" in out:
        s = out["item_sharded"]
        print(
            f"item-sharded (2 shards, U={s['users']:,}): ids {s['ids_identical']}, scores {s['scores_identical']}, "
            f"normaliser max |diff| {s['lse_max_abs_diff']:.1e}; throughput ratio {s['ratio_steady']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
