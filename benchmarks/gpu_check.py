"""One-call GPU check: build the CUDA extension, check every GPU backend, time it against the anchors.

Run on a GPU machine from a clean copy of the repository (no virtual environment needed: the system
``python3`` with numpy, scipy, tqdm, pybind11 and torch; CuPy and FAISS are used when importable)::

    python3 benchmarks/gpu_check.py                 # build + checks + timings, ~3-6 minutes on an H100
    python3 benchmarks/gpu_check.py --no-build      # extension already built in place
    python3 benchmarks/gpu_check.py --quick         # smaller timing problem (U=10k) for a smoke run

Steps, in one process after the build:

1. ``python3 setup.py build_ext --inplace`` with ``MMREC_FAST_BUILD_CUDA=1`` (a failed CUDA build is an
   error here, not a warning).
2. Correctness of every available GPU backend ("cuda", "cupy", "torch") on every input family it takes
   (NumPy, CUDA torch tensors, CuPy arrays), against the CPU float64 reference on fresh random inputs:
   generic scores with exclusion and temperature, exact ties (small integers), padding (k > I and an
   all-excluded user), many item shards (3 users x 200k items), k = 8192, and NaN rejection. The result
   type must be the input's family, on the input's device.
3. Timings at U=100k, I=1M, d in {64, 128}, k in {100, 1000} (inputs already on the GPU): our fused
   kernel (backend "cuda"), PyTorch ``mm`` + ``topk`` + ``logsumexp`` in user chunks, and FAISS-GPU
   (``knn_gpu`` / ``GpuIndexFlatIP``; its k is capped at 2048) if importable; plus the device's measured
   float32 (and bf16) GEMM rate, so each row also shows the fraction of the GEMM peak reached; for
   k = 100 also our kernel on the same problem in bfloat16 (tensor-core path, column "bf16 s"). Ours: best
   of 3 timed runs; the anchors: one timed run after a warm-up.

Prints one table and writes JSON to ``$OUT/gpu_check.json`` when ``$OUT`` is set, else to
``benchmarks/results/gpu-check-<time>.json``. Exit status 1 if any correctness check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

T_START = time.perf_counter()


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T_START:7.1f}s] {msg}", flush=True)


def build() -> None:
    env = dict(os.environ, MMREC_FAST_BUILD_CUDA="1")
    env.setdefault("MMREC_FAST_CUDA_ARCHS", "80;90")
    log("building extensions: python setup.py build_ext --inplace")
    proc = subprocess.run(
        [sys.executable, "setup.py", "build_ext", "--inplace", "-j", str(os.cpu_count() or 4)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    warnings = [
        line
        for line in (proc.stdout + proc.stderr).splitlines()
        if "warning" in line.lower() and "Deprecat" not in line
    ]
    if proc.returncode != 0:
        print(proc.stdout[-6000:], proc.stderr[-6000:])
        raise SystemExit("build failed")
    log(f"build ok ({len(warnings)} warning lines{': ' + warnings[0] if warnings else ''})")


# ---------------------------------------------------------------------------------------------- checks


def _to_numpy_result(result, mf):
    from mmrec_fast import _arrays

    return mf.TopK(
        _arrays.asnumpy(result.indices),
        _arrays.asnumpy(result.scores),
        _arrays.asnumpy(result.log_normalizer),
        result.temperature,
    )


def run_checks(mf, np, torch, cupy):
    from mmrec_fast import _arrays
    from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

    status = mf.available_backends()
    for s in status.values():
        log(f"backend {s}")
    backends = [b for b in ("cuda", "cupy", "torch") if status[b].available]
    families = ["numpy", "torch"] + (["cupy"] if cupy is not None else [])
    rng = np.random.default_rng(12345)

    def on(fam, x):
        if fam == "torch":
            return torch.from_numpy(np.ascontiguousarray(x)).cuda()
        if fam == "cupy":
            return cupy.asarray(x)
        return x

    cases = []
    users, items = random_problem(rng, 300, 5000, 64)
    excl = random_exclusion(rng, 300, 5000, density=0.05, full_rows=(7,))
    cases.append(("generic+exclusion+T=0.5", users, items, 100, excl, 0.5, False))
    iu = rng.integers(-2, 3, size=(64, 4)).astype(np.float32)
    iv = rng.integers(-2, 3, size=(3000, 4)).astype(np.float32)
    cases.append(("ties (integers)", iu, iv, 50, None, 1.0, True))
    pu, pv = random_problem(rng, 20, 50, 8)
    pex = random_exclusion(rng, 20, 50, density=0.3, full_rows=(0, 5))
    cases.append(("padding k>I, all-excluded rows", pu, pv, 80, pex, 2.0, False))
    su, sv = random_problem(rng, 3, 200_000, 32)
    sex = random_exclusion(rng, 3, 200_000, density=0.01)
    cases.append(("item shards (3 x 200k)", su, sv, 1000, sex, 1.0, False))
    bu, bv = random_problem(rng, 100, 20_000, 16)
    cases.append(("k=8192", bu, bv, 8192, None, 1.0, False))

    results = []
    for backend in backends:
        for fam in families:
            if backend == "cupy" and cupy is None:
                continue
            for name, u, v, k, ex, temp, exact in cases:
                label = f"{backend:5s} {fam:5s} {name}"
                t0 = time.perf_counter()
                try:
                    uu, vv = on(fam, u), on(fam, v)
                    got = mf.topk(uu, vv, k, exclude=ex, temperature=temp, backend=backend)
                    if fam != "numpy":
                        assert _arrays.family(got.indices) == fam, f"result family {_arrays.family(got.indices)}"
                        assert _arrays.is_device(got.indices), "result left the device"
                    else:
                        assert isinstance(got.indices, np.ndarray), type(got.indices)
                    assert_topk_matches(
                        _to_numpy_result(got, mf), u, v, k, exclude=ex, temperature=temp, exact_ids=exact
                    )
                    ok, detail = True, ""
                except Exception as exc:  # report every failure, keep checking
                    ok, detail = False, f"{type(exc).__name__}: {exc}"[:400]
                    traceback.print_exc()
                results.append(dict(check=label, ok=ok, seconds=round(time.perf_counter() - t0, 3), detail=detail))
                log(f"{'PASS' if ok else 'FAIL'} {label} {detail}")
            if backend == "cuda" and fam == "torch":
                # 16-bit inputs on tensor cores, checked against the reference on the 16-bit values.
                for dtype in (torch.float16, torch.bfloat16):
                    label = f"{backend:5s} {fam:5s} {str(dtype).split('.')[-1]} tensor cores"
                    try:
                        hu = torch.from_numpy(users).cuda().to(dtype)
                        hv = torch.from_numpy(items).cuda().to(dtype)
                        got = mf.topk(hu, hv, 100, exclude=excl, temperature=0.5, backend=backend)
                        assert_topk_matches(
                            _to_numpy_result(got, mf),
                            hu.float().cpu().numpy(),
                            hv.float().cpu().numpy(),
                            100,
                            exclude=excl,
                            temperature=0.5,
                        )
                        ok, detail = True, ""
                    except Exception as exc:
                        ok, detail = False, f"{type(exc).__name__}: {exc}"[:400]
                        traceback.print_exc()
                    results.append(dict(check=label, ok=ok, seconds=0.0, detail=detail))
                    log(f"{'PASS' if ok else 'FAIL'} {label} {detail}")
            # NaN rejection where the data lives.
            label = f"{backend:5s} {fam:5s} NaN rejected"
            bad = u.copy()
            bad[3, 1] = np.nan
            try:
                mf.topk(on(fam, bad), on(fam, v), 5, backend=backend)
                ok, detail = False, "no ValueError"
            except ValueError as exc:
                ok, detail = "users: contains NaN" in str(exc), str(exc)[:200]
            results.append(dict(check=label, ok=ok, seconds=0.0, detail=detail))
            log(f"{'PASS' if ok else 'FAIL'} {label} {detail if not ok else ''}")
    return results


# --------------------------------------------------------------------------------------------- timings


def cuda_time(torch, fn, repeat=1):
    """Wall seconds of fn() with the device synchronised before and after (best of `repeat`)."""
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def gemm_rates(torch):
    rates = {}
    n = 8192
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device="cuda", dtype=dtype)
        b = torch.randn(n, n, device="cuda", dtype=dtype)
        torch.backends.cuda.matmul.allow_tf32 = False
        for _ in range(2):
            a @ b
        t = cuda_time(torch, lambda: [a @ b for _ in range(5)]) / 5
        rates[name] = 2 * n**3 / t / 1e12
        del a, b
    torch.cuda.empty_cache()
    return rates


def torch_topk(torch, users, items, k, chunk):
    """The unfused anchor: per user chunk a dense score tile, then topk and logsumexp over it."""
    outs = []
    for u0 in range(0, users.shape[0], chunk):
        s = users[u0 : u0 + chunk] @ items.T
        vals, idx = torch.topk(s, k, dim=1)
        lse = torch.logsumexp(s, dim=1)
        outs.append((vals, idx, lse))
        del s
    return outs


def faiss_search(faiss, users, items, k):
    """A GPU flat inner-product index holding the items (built outside the timing); returns the search."""
    res = faiss.StandardGpuResources()
    index = faiss.GpuIndexFlatIP(res, items.shape[1])
    index.add(items.cpu().numpy())
    host_users = users.cpu().numpy()
    return lambda: index.search(host_users, k)


def run_timings(mf, np, torch, args, gemm):
    try:
        import faiss  # noqa: F401

        faiss_mod = faiss if hasattr(faiss, "StandardGpuResources") else None
        faiss_note = "" if faiss_mod else "faiss has no GPU support"
    except ImportError:
        faiss_mod, faiss_note = None, "faiss not installed"
    torch.backends.cuda.matmul.allow_tf32 = False  # the contract is float32 math on both sides
    rows = []
    n_users = args.users
    n_items = args.items
    gen = torch.Generator(device="cuda").manual_seed(0)
    for dim in (64, 128):
        items = torch.randn(n_items, dim, device="cuda", generator=gen) / dim**0.5
        users = torch.randn(n_users, dim, device="cuda", generator=gen) / dim**0.5
        for k in (100, 1000):
            if time.perf_counter() - T_START > args.budget_s:
                log(f"time budget reached, skipping d={dim} k={k}")
                continue
            flops = 2.0 * n_users * n_items * dim
            row = dict(U=n_users, I=n_items, d=dim, k=k)
            mf.topk(users[:256], items, k, backend="cuda")  # warm-up (module load, first launch)
            # A tenth first: if the full run would not fit the remaining budget, report the tenth.
            tenth = max(1, n_users // 10)
            t_tenth = cuda_time(torch, lambda: mf.topk(users[:tenth], items, k, backend="cuda"))
            if 12 * t_tenth > args.budget_s - (time.perf_counter() - T_START):
                log(f"d={dim} k={k}: full run predicted {10 * t_tenth:.0f}s, timing U={tenth} only")
                row["U"], users_run = tenth, users[:tenth]
                flops = 2.0 * tenth * n_items * dim
            else:
                users_run = users
            t = cuda_time(torch, lambda: mf.topk(users_run, items, k, backend="cuda"), repeat=3)
            row["ours_s"] = t
            row["ours_tflops"] = flops / t / 1e12
            chunk = max(1, (1 << 30) // n_items)  # 4 GB float32 score tile per step
            torch_topk(torch, users[:chunk], items, k, chunk)
            row["torch_s"] = cuda_time(torch, lambda: torch_topk(torch, users_run, items, k, chunk))
            if faiss_mod is not None and k <= 2048:
                try:
                    row["faiss_s"] = cuda_time(torch, faiss_search(faiss_mod, users_run, items, k))
                except Exception as exc:
                    row["faiss_note"] = f"{type(exc).__name__}: {exc}"[:200]
            else:
                row["faiss_note"] = faiss_note or "k > 2048"
            if k == 100 and time.perf_counter() - T_START < args.budget_s:
                hu, hv = users.bfloat16(), items.bfloat16()  # tensor-core path, same problem in bf16
                mf.topk(hu[:256], hv, k, backend="cuda")
                row["ours_bf16_s"] = cuda_time(
                    torch, lambda: mf.topk(hu[: users_run.shape[0]], hv, k, backend="cuda"), repeat=3
                )
                del hu, hv
            rows.append(row)
            log(
                f"d={dim} k={k}: ours {t:.3f}s ({row['ours_tflops']:.1f} TFLOP/s, "
                f"{row['ours_tflops'] / gemm['fp32']:.0%} of fp32 GEMM), torch {row['torch_s']:.3f}s "
                f"({row['torch_s'] / t:.2f}x ours)" + (f", faiss {row['faiss_s']:.3f}s" if "faiss_s" in row else "")
            )
        del items, users
        torch.cuda.empty_cache()
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-build", action="store_true", help="use the extension already built in place")
    parser.add_argument("--no-timings", action="store_true", help="correctness checks only")
    parser.add_argument("--quick", action="store_true", help="time U=10k instead of 100k")
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument(
        "--budget-s",
        type=float,
        default=420.0,
        help="skip remaining timings once this many seconds have passed (default 420)",
    )
    args = parser.parse_args(argv)
    args.users = args.users or (10_000 if args.quick else 100_000)

    if not args.no_build:
        build()
    import numpy as np
    import torch

    try:
        import cupy
    except ImportError:
        cupy = None
    import mmrec_fast as mf
    from mmrec_fast import _cuda

    count, reason = _cuda.device_count()
    if count == 0:
        raise SystemExit(f"no CUDA device: {reason}")
    name, major, minor = _cuda.device_info(0)
    log(
        f"device: {name} (sm_{major}{minor}), CUDA runtime {_cuda.runtime_version()}, torch {torch.__version__}, "
        f"cupy {getattr(cupy, '__version__', 'not installed')}"
    )

    checks = run_checks(mf, np, torch, cupy)
    failed = [c for c in checks if not c["ok"]]
    log(f"correctness: {len(checks) - len(failed)}/{len(checks)} passed")

    gemm, rows = {}, []
    if not args.no_timings:
        gemm = gemm_rates(torch)
        log(f"GEMM: fp32 {gemm['fp32']:.1f} TFLOP/s, bf16 {gemm['bf16']:.1f} TFLOP/s (8192^3, torch)")
        rows = run_timings(mf, np, torch, args, gemm)

    print()
    print(
        f"{'U':>7} {'I':>8} {'d':>4} {'k':>5} | {'ours s':>8} {'TFLOP/s':>8} {'%fp32':>6} {'bf16 s':>7} | "
        f"{'torch s':>8} {'x':>6} | {'faiss s':>8} {'x':>6}"
    )
    for r in rows:
        faiss_cell = (
            f"{r['faiss_s']:8.3f} {r['faiss_s'] / r['ours_s']:6.2f}" if "faiss_s" in r else f"{'-':>8} {'-':>6}"
        )
        bf16 = f"{r['ours_bf16_s']:7.3f}" if "ours_bf16_s" in r else f"{'-':>7}"
        print(
            f"{r['U']:>7} {r['I']:>8} {r['d']:>4} {r['k']:>5} | {r['ours_s']:8.3f} {r['ours_tflops']:8.1f} "
            f"{r['ours_tflops'] / gemm['fp32']:6.0%} {bf16} | {r['torch_s']:8.3f} "
            f"{r['torch_s'] / r['ours_s']:6.2f} | {faiss_cell}"
        )
    if rows:
        note = next((r.get("faiss_note") for r in rows if r.get("faiss_note")), "")
        if note:
            print(f"faiss: {note}")
        by = {(r["d"], r["k"]): r for r in rows}
        for d in (64, 128):
            if (d, 100) in by and (d, 1000) in by:
                print(f"d={d}: k=1000 costs {by[(d, 1000)]['ours_s'] / by[(d, 100)]['ours_s'] - 1:+.0%} vs k=100")
    print(
        f"correctness: {len(checks) - len(failed)}/{len(checks)} passed"
        + "".join(f"\n  FAIL {c['check']}: {c['detail']}" for c in failed)
    )

    out_dir = Path(os.environ["OUT"]) if os.environ.get("OUT") else ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / ("gpu_check.json" if os.environ.get("OUT") else f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.write_text(
        json.dumps(
            dict(
                device=name,
                capability=f"{major}.{minor}",
                gemm_tflops=gemm,
                checks=checks,
                timings=rows,
                seconds=time.perf_counter() - T_START,
            ),
            indent=1,
        )
    )
    log(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
