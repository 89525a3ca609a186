"""The GPU-capable backends: torch (runs on CPU tensors everywhere), cuda and cupy (need a device).

The contract tests of test_topk.py & co. already run on every available backend through
``testing.BACKENDS`` (NumPy inputs); this file adds what is specific to array backends: torch / CuPy
arrays in and out, exact tie order across tiles, the key encoding, the registry's choices and reasons.
Tests that need a CUDA device carry the ``gpu`` marker and skip with the reason when there is none.
"""

import numpy as np
import pytest

import mmrec_fast as mf
from mmrec_fast import _arrays
from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

torch = pytest.importorskip("torch", reason="torch not installed")


def _numpy_result(result):
    return mf.TopK(
        _arrays.asnumpy(result.indices),
        _arrays.asnumpy(result.scores),
        _arrays.asnumpy(result.log_normalizer),
        result.temperature,
    )


def _cuda_status():
    return mf.available_backends()["cuda"]


def _require_cuda():
    status = _cuda_status()
    if not status.available:
        pytest.skip(f"no usable CUDA backend: {status.detail}")


# ------------------------------------------------------------------------------------- torch on CPU


def test_torch_keys_roundtrip_and_order():
    from mmrec_fast.backends.torch_backend import EMPTY_KEY, decode_keys, encode_keys

    scores = torch.tensor([[1.5, -0.0, 0.0, -2.0, float("-inf"), 3e38, -3e38, 1.5]], dtype=torch.float32)
    keys = encode_keys(scores, 10)
    assert keys[0, 4] == EMPTY_KEY
    back, idx = decode_keys(keys)
    expected = scores.clone()
    expected[0, 1] = 0.0  # -0.0 folded into +0.0
    assert torch.equal(back, expected)
    assert idx.tolist() == [[10, 11, 12, 13, -1, 15, 16, 17]]
    order = torch.argsort(keys[0], descending=True).tolist()
    # score descending, ties (1.5 at 10 and 17; 0.0 at 11 and 12) to the lower index, -inf last
    assert order == [5, 0, 7, 1, 2, 3, 6, 4]


def test_torch_tensors_in_tensors_out(rng):
    users, items = random_problem(rng, 40, 700, 16)
    excl = random_exclusion(rng, 40, 700, density=0.1, full_rows=(3,))
    got = mf.topk(torch.from_numpy(users), torch.from_numpy(items), 9, exclude=excl, temperature=0.7, backend="torch")
    assert isinstance(got.indices, torch.Tensor) and got.indices.dtype == torch.int64
    assert got.scores.dtype == torch.float32 and got.probs.dtype == torch.float32
    assert got.log_normalizer.dtype == torch.float64 and got.indices.device.type == "cpu"
    assert_topk_matches(_numpy_result(got), users, items, 9, exclude=excl, temperature=0.7)
    assert torch.isneginf(got.log_normalizer[3]) and bool((got.indices[3] == -1).all())
    assert bool((got.probs[3] == 0).all())


def test_torch_numpy_in_numpy_out(rng):
    users, items = random_problem(rng, 5, 80, 4)
    got = mf.topk(users, items, 100, backend="torch")  # k > I: padding
    assert isinstance(got.indices, np.ndarray)
    assert_topk_matches(got, users, items, 100)


@pytest.mark.parametrize("item_block", [1, 7, 64, None])
def test_torch_exact_ties_across_tiles(rng, item_block):
    # Small integers: many exactly equal scores, including at the k-th boundary and across tiles.
    users = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(200, 3)).astype(np.float32)
    index = mf.ItemIndex(torch.from_numpy(items), backend="torch", item_block=item_block)
    got = index.topk(torch.from_numpy(users), 17, user_block=4)
    assert_topk_matches(_numpy_result(got), users, items, 17, exact_ids=True)
    np.testing.assert_array_equal(got.indices.numpy(), mf.topk(users, items, 17, backend="numpy").indices)


def test_torch_half_and_bfloat16_inputs(rng):
    users, items = random_problem(rng, 6, 300, 8)
    for dtype in (torch.float16, torch.bfloat16):
        tu, tv = torch.from_numpy(users).to(dtype), torch.from_numpy(items).to(dtype)
        got = mf.topk(tu, tv, 5, backend="torch")
        assert_topk_matches(_numpy_result(got), tu.float().numpy(), tv.float().numpy(), 5)


def test_torch_rejects_bad_input_naming_the_argument(rng):
    users, items = random_problem(rng, 4, 50, 8)
    bad = torch.from_numpy(users.copy())
    bad[2, 5] = float("nan")
    with pytest.raises(ValueError, match=r"users: contains NaN \(first at row 2, column 5\)"):
        mf.topk(bad, torch.from_numpy(items), 3, backend="torch")
    inf_items = torch.from_numpy(items.copy())
    inf_items[7, 0] = float("inf")
    with pytest.raises(ValueError, match="items: contains inf"):
        mf.topk(torch.from_numpy(users), inf_items, 3, backend="torch")
    with pytest.raises(ValueError, match="users: has 3 dimensions"):
        mf.topk(torch.zeros(2, 3), torch.from_numpy(items), 3, backend="torch")
    with pytest.raises(ValueError, match="users: expected a 2-D array"):
        mf.topk(torch.zeros(8), torch.from_numpy(items), 3, backend="torch")
    with pytest.raises(ValueError, match="temperature"):
        mf.topk(torch.from_numpy(users), torch.from_numpy(items), 3, temperature=0.0, backend="torch")


def test_torch_strided_tensor_is_not_misread(rng):
    users, items = random_problem(rng, 8, 120, 6)
    fortran = torch.from_numpy(np.asfortranarray(items)).T.contiguous().T  # same values, column-major
    got = mf.topk(torch.from_numpy(users), fortran, 4, backend="torch")
    np.testing.assert_array_equal(got.indices.numpy(), mf.topk(users, items, 4, backend="numpy").indices)


def test_torch_item_shards_merge_exactly(rng):
    users, items = random_problem(rng, 10, 500, 8)
    whole = mf.topk(users, items, 12, backend="torch")
    parts = []
    for lo, hi in [(0, 123), (123, 124), (124, 500)]:
        part = mf.topk(users, items[lo:hi], 12, backend="torch")
        parts.append(mf.TopK(np.where(part.indices >= 0, part.indices + lo, -1), part.scores, part.log_normalizer))
    merged = mf.merge_topk(parts)
    np.testing.assert_array_equal(merged.indices, whole.indices)
    np.testing.assert_allclose(merged.log_normalizer, whole.log_normalizer, atol=1e-6)


# ----------------------------------------------------------------------------------------- registry


def test_registry_records_gpu_reasons():
    status = mf.available_backends()
    assert status["torch"].available
    try:
        import cupy  # noqa: F401
    except ImportError:
        assert not status["cupy"].available and status["cupy"].detail.startswith("cupy not installed")
    if not status["cuda"].available:
        assert status["cuda"].detail  # no extension, stale build, or no device: said which
        with pytest.raises(ValueError, match="backend 'cuda' is not available here"):
            mf.topk(np.ones((2, 3)), np.eye(5, 3), 2, backend="cuda")


def test_auto_keeps_host_inputs_on_cpu_engines(monkeypatch):
    from mmrec_fast import backends

    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    cpu_tensor = torch.zeros(3, 2)
    assert backends.get_backend("auto", arrays=(cpu_tensor,)).name in backends.CPU_BACKENDS
    if not mf.available_backends()["cuda"].available:
        assert backends.get_backend("auto", macs=10**15).name in backends.CPU_BACKENDS


def test_cuda_kernel_plan_is_sane():
    cuda = pytest.importorskip("mmrec_fast._cuda", reason="CUDA extension not built")
    if not hasattr(cuda, "plan"):
        pytest.skip("CUDA extension built without the kernels")
    # Many users: no item shards, everything in one launch within the workspace.
    shards, shard_len, batch = cuda.plan(100_000, 1_000_000, 100, 228, 132, 1 << 30)
    assert shards == 1 and shard_len >= 1_000_000 and batch == 100_000
    # Few users, big catalogue: the items are split, on tile boundaries, covering every item once.
    shards, shard_len, batch = cuda.plan(3, 1_000_000, 1000, 2000, 132, 1 << 30)
    assert shards > 1 and shard_len % 128 == 0 and (shards - 1) * shard_len < 1_000_000 <= shards * shard_len
    # A tight workspace batches users by whole 64-user tiles.
    shards, shard_len, batch = cuda.plan(100_000, 1_000_000, 8192, 16384, 132, 1 << 30)
    assert batch % 64 == 0 and batch * shards * 16384 * 8 <= 1 << 30
    assert cuda.max_k() >= 8192


# ----------------------------------------------------------------------------------------- GPU only

GPU_CASES = [  # (n_users, n_items, dim, k, exclusion density, temperature)
    (1, 1, 1, 1, 0.0, 1.0),
    (65, 129, 17, 10, 0.1, 0.5),  # ragged user and item tiles, odd d
    (300, 5000, 64, 100, 0.05, 1.0),
    (3, 200_000, 32, 1000, 0.01, 2.0),  # item shards
    (100, 20_000, 16, 8192, 0.0, 1.0),  # long lists
    (20, 50, 8, 80, 0.3, 1.0),  # k > I: padding
]


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "cupy", "torch"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "x".join(map(str, c[:4])))
def test_gpu_backends_match_reference(rng, backend, case):
    _require_cuda()
    status = mf.available_backends()[backend]
    if not status.available:
        pytest.skip(f"{backend} unavailable: {status.detail}")
    n_users, n_items, dim, k, density, temperature = case
    users, items = random_problem(rng, n_users, n_items, dim)
    excl = random_exclusion(rng, n_users, n_items, density=density, full_rows=(0,) if n_users > 2 else ())
    for family in ("numpy", "torch"):
        u = users if family == "numpy" else torch.from_numpy(users).cuda()
        v = items if family == "numpy" else torch.from_numpy(items).cuda()
        got = mf.topk(u, v, k, exclude=excl, temperature=temperature, backend=backend)
        assert _arrays.family(got.indices) == family
        if family == "torch":
            assert got.indices.is_cuda and got.probs.is_cuda
        assert_topk_matches(_numpy_result(got), users, items, k, exclude=excl, temperature=temperature)


@pytest.mark.gpu
@pytest.mark.parametrize("backend", ["cuda", "torch"])
def test_gpu_exact_ties(rng, backend):
    _require_cuda()
    users = rng.integers(-2, 3, size=(130, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(5000, 3)).astype(np.float32)
    got = mf.topk(torch.from_numpy(users).cuda(), torch.from_numpy(items).cuda(), 300, backend=backend)
    np.testing.assert_array_equal(got.indices.cpu().numpy(), mf.topk(users, items, 300, backend="numpy").indices)


@pytest.mark.gpu
def test_cuda_rejects_nan_on_device_and_huge_k(rng):
    _require_cuda()
    users, items = random_problem(rng, 4, 50_000, 8)
    bad = torch.from_numpy(users).cuda()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="users: contains NaN"):
        mf.topk(bad, torch.from_numpy(items).cuda(), 3, backend="cuda")
    from mmrec_fast.backends.cuda_backend import MAX_K

    with pytest.raises(ValueError, match="k: the cuda backend supports"):
        mf.topk(users, items, MAX_K + 1, backend="cuda")


@pytest.mark.gpu
def test_cupy_in_cupy_out(rng):
    _require_cuda()
    cupy = pytest.importorskip("cupy", reason="cupy not installed")
    users, items = random_problem(rng, 50, 3000, 32)
    for backend in ("cuda", "cupy"):
        got = mf.topk(cupy.asarray(users), cupy.asarray(items), 20, backend=backend)
        assert isinstance(got.indices, cupy.ndarray) and isinstance(got.probs, cupy.ndarray)
        assert_topk_matches(_numpy_result(got), users, items, 20)


@pytest.mark.gpu
def test_auto_keeps_device_inputs_on_gpu(rng):
    _require_cuda()
    users, items = random_problem(rng, 10, 500, 8)
    got = mf.topk(torch.from_numpy(users).cuda(), torch.from_numpy(items).cuda(), 5)
    assert got.indices.is_cuda


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_cuda_tensor_core_inputs(rng, dtype):
    """16-bit device inputs of one type run on tensor cores; the result is float32 math on those values."""
    _require_cuda()
    users, items = random_problem(rng, 70, 3000, 40)  # ragged d (not a multiple of 16 or 32)
    excl = random_exclusion(rng, 70, 3000, density=0.05, full_rows=(1,))
    tu = torch.from_numpy(users).cuda().to(getattr(torch, dtype))
    tv = torch.from_numpy(items).cuda().to(getattr(torch, dtype))
    got = mf.topk(tu, tv, 64, exclude=excl, temperature=0.5, backend="cuda")
    assert got.indices.is_cuda
    assert_topk_matches(
        _numpy_result(got), tu.float().cpu().numpy(), tv.float().cpu().numpy(), 64, exclude=excl, temperature=0.5
    )
    mixed = mf.topk(tu.float(), tv, 64, exclude=excl, temperature=0.5, backend="cuda")  # float32 path
    assert_topk_matches(
        _numpy_result(mixed), tu.float().cpu().numpy(), tv.float().cpu().numpy(), 64, exclude=excl, temperature=0.5
    )
