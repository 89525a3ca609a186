"""A NumPy emulation of the fused CUDA kernel's algorithm, checked against the float64 reference on CPU.

The kernel (csrc/cuda/topk_kernel.cu) cannot run without a GPU, but its algorithm can: this module
replays it step by step for one user at a time -- item shards, tiles, the forward-only exclusion cursor,
the per-lane online normaliser (float32 max, float64 sum rescaled only when the max rises,
lanes combined by log-add-exp per shard), the strict key threshold, the buffer prune by an
8-bit radix select written exactly like the warp version (lane l owns bins 255-8l .. 248-8l, a warp
scan, the first lane whose inclusive sum reaches the rank), and the shard merge (log-add-exp, block
radix select, sort). Small tiles and the tightest legal buffer (k + one tile) make it prune constantly,
so every branch of the selection logic runs. A mismatch here is a design bug; the GPU check then covers
the CUDA transcription.
"""

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast import _keys, validation
from mmrec_fast.testing import assert_topk_matches, random_exclusion, random_problem

U64 = np.uint64


def make_keys(scores: np.ndarray, first_index: int) -> np.ndarray:
    """The kernel's make_key (common/order_key.h) is the package's one Python key: _keys.encode."""
    return _keys.encode(scores, np.arange(first_index, first_index + scores.shape[0], dtype=np.int64))


def decode_key(key: int) -> tuple[float, int]:
    ordered = np.uint32(key >> 32)
    bits = ordered & np.uint32(0x7FFFFFFF) if ordered & np.uint32(0x80000000) else ~ordered
    return float(np.uint32(bits).view(np.float32)), int(0xFFFFFFFF - (key & 0xFFFFFFFF))


def find_bin(hist: np.ndarray, remaining: int) -> tuple[int, int]:
    """The warp version: 32 lanes x 8 bins in descending order, inclusive scan, first lane reaching it."""
    local = np.array([[hist[255 - 8 * lane - j] for j in range(8)] for lane in range(32)])
    sums = local.sum(axis=1)
    incl = np.cumsum(sums)
    src = int(np.flatnonzero(incl >= remaining)[0])
    cum = int(incl[src] - sums[src])
    for j in range(8):
        if cum + local[src, j] >= remaining:
            return 255 - 8 * src - j, cum
        cum += int(local[src, j])
    raise AssertionError("unreachable: the rank lies inside the source lane")


def kth_largest(keys: np.ndarray, need: int) -> int:
    prefix, mask, remaining = 0, 0, need
    for shift in range(56, -1, -8):
        sel = keys[(keys & U64(mask)) == U64(prefix)]
        hist = np.bincount(((sel >> U64(shift)) & U64(0xFF)).astype(np.int64), minlength=256)
        b, before = find_bin(hist, remaining)
        prefix |= b << shift
        mask |= 0xFF << shift
        remaining -= before
    return prefix


def emulate_kernel(
    users, items, k, inv_t, indptr, indices, *, tile, capacity, shards, shard_len, mask=None, normalizer=True
):
    """The kernel pair, one user at a time (users in a block never interact).

    ``mask``: the item mask (uint8 (I,), 0 = ineligible for every user) or None; ``normalizer=False``: no exp
    work, and the merge writes NaN as the kernel does.
    """
    assert capacity >= k + tile and 1 <= k <= items.shape[0]
    n_users, n_items = users.shape[0], items.shape[0]
    out_idx = np.full((n_users, k), -1, dtype=np.int64)
    out_scores = np.full((n_users, k), -np.inf, dtype=np.float32)
    out_lse = np.full(n_users, -np.inf)
    inv_t = np.float32(inv_t)
    for u in range(n_users):
        parts = []
        for s in range(shards):
            s_begin, s_end = s * shard_len, min(s * shard_len + shard_len, n_items)
            row = indices[indptr[u] : indptr[u + 1]]
            cursor = indptr[u] + int(np.searchsorted(row, s_begin))
            thr, buf = 0, np.zeros(0, dtype=U64)
            # Per-lane online normaliser: lane l of the warp folds tile positions p with p % 32 == l.
            lane_max = np.full(32, -np.inf, dtype=np.float32)
            lane_sum = np.zeros(32)
            for j0 in range(s_begin, s_end, tile):
                j1 = min(j0 + tile, s_end)
                eligible = np.zeros(tile, dtype=bool)  # columns past the shard are not items
                eligible[: j1 - j0] = True if mask is None else mask[j0:j1] != 0
                if not eligible.any():
                    continue  # the block skips the tile before scoring it
                sc = np.full(tile, -np.inf, dtype=np.float32)
                sc[: j1 - j0] = items[j0:j1] @ users[u]  # float32 math
                while cursor < indptr[u + 1] and indices[cursor] < j1:  # forward-only exclusion cursor
                    if indices[cursor] >= j0:  # ids in tiles the mask skipped are passed over
                        sc[indices[cursor] - j0] = -np.inf
                    cursor += 1
                sc[~eligible] = -np.inf  # masked items: as excluded ones
                live = ~np.isneginf(sc)
                if not live.any():
                    continue
                if normalizer:
                    scaled = sc * inv_t  # float32; -inf stays -inf
                    lanes = np.arange(tile) % 32
                    m = np.full(32, -np.inf, dtype=np.float32)
                    np.maximum.at(m, lanes, scaled)
                    rise = m > lane_max  # the rescale (a float32 exp) runs only when a lane's max rises
                    lane_sum[rise] *= np.exp(lane_max[rise] - m[rise]).astype(np.float64)
                    lane_max[rise] = m[rise]
                    e = np.zeros(32, dtype=np.float32)
                    np.add.at(e, lanes[live], np.exp(scaled[live] - lane_max[lanes[live]]))
                    lane_sum += e
                keys = make_keys(sc, j0)
                if int((keys > U64(thr)).sum()) + buf.size > capacity:
                    assert buf.size > k  # guaranteed by capacity >= k + tile
                    thr = kth_largest(buf, k)
                    buf = buf[buf >= U64(thr)]  # in-place compaction keeps order
                    assert buf.size == k
                buf = np.concatenate([buf, keys[keys > U64(thr)]])
                assert buf.size <= capacity
            # log-add-exp of the 32 lanes' pairs at the end of the shard.
            run_max, run_sum = float(lane_max.max()), 0.0
            if np.isfinite(run_max):
                f = np.isfinite(lane_max)
                run_sum = float(np.sum(lane_sum[f] * np.exp(lane_max[f].astype(np.float64) - run_max)))
            parts.append((buf, run_max, run_sum))
        # Merge kernel.
        maxes = np.array([p[1] for p in parts])
        if not normalizer:
            out_lse[u] = np.nan
        elif np.isfinite(maxes).any():
            big = maxes.max()
            total = sum(p[2] * np.exp(p[1] - big) for p in parts if np.isfinite(p[1]))
            out_lse[u] = big + np.log(total)
        allkeys = np.concatenate([p[0] for p in parts])
        need = min(k, allkeys.size)
        kth = kth_largest(allkeys, need) if need < allkeys.size else 1
        survivors = np.sort(allkeys[allkeys >= U64(kth)])[::-1]
        assert survivors.size == need
        for r, key in enumerate(survivors):
            out_scores[u, r], out_idx[u, r] = decode_key(int(key))
    return out_idx, out_scores, out_lse


def plan(n_users, n_items, k, capacity, sm_count=132, tile=128):
    """Shards as the C launcher plans them (the extension's own plan when it is built)."""
    try:
        from mmrec_fast import _cuda

        if tile == 128 and hasattr(_cuda, "plan"):
            shards, shard_len, _ = _cuda.plan(n_users, n_items, k, capacity, sm_count, 1 << 30)
            return shards, shard_len
    except ImportError:
        pass
    user_tiles = max(1, -(-n_users // 64))
    shards = min(-(-4 * sm_count // user_tiles), max(1, n_items // (8 * tile)))
    shards = max(1, shards)
    length = _ceil_div(_ceil_div(n_items, shards), tile) * tile
    return -(-n_items // length), length


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _run(users, items, k, exclude, temperature, *, tile, shards=None, allow=None, ban=None, normalizer=True):
    u32 = validation.as_float_matrix(users, "users")
    v32 = validation.as_float_matrix(items, "items")
    indptr, indices = validation.as_exclusion(exclude, u32.shape[0], v32.shape[0])
    mask, _ = validation.item_mask(allow, ban, v32.shape[0])
    k_eff = min(k, v32.shape[0])
    capacity = max(2 * k_eff, k_eff + tile) if shards is None else k_eff + tile  # tightest legal buffer too
    if shards is None:
        n_shards, shard_len = plan(u32.shape[0], v32.shape[0], k_eff, capacity, tile=tile)
    else:
        shard_len = _ceil_div(_ceil_div(v32.shape[0], shards), tile) * tile
        n_shards = -(-v32.shape[0] // shard_len)
    idx, sc, lse = emulate_kernel(
        u32,
        v32,
        k_eff,
        1.0 / temperature,
        indptr,
        indices,
        tile=tile,
        capacity=capacity,
        shards=n_shards,
        shard_len=shard_len,
        mask=mask,
        normalizer=normalizer,
    )
    pad = k - k_eff
    idx = np.pad(idx, ((0, 0), (0, pad)), constant_values=-1)
    sc = np.pad(sc, ((0, 0), (0, pad)), constant_values=-np.inf)
    if not normalizer:
        assert np.all(np.isnan(lse))  # the kernel's "not computed"
        return mf.TopK(idx, sc, None, temperature)
    return mf.TopK(idx, sc, lse, temperature)


def _with_filters_excluded(exclude, n_users, n_items, *, allow=None, ban=None):
    """The exclusion CSR that makes the reference see what the filters leave eligible (the definition)."""
    ok = np.ones((n_users, n_items), dtype=bool)
    if allow is not None:
        ok &= validation.as_item_filter(allow, "allow", n_items)[None, :]
    if ban is not None:
        ok &= ~validation.as_item_filter(ban, "ban", n_items)[None, :]
    if exclude is not None:
        indptr, indices = validation.as_exclusion(exclude, n_users, n_items)
        for u in range(n_users):
            ok[u, indices[indptr[u] : indptr[u + 1]]] = False
    return sp.csr_matrix(~ok)


@pytest.mark.parametrize("tile,shards", [(8, 1), (8, 3), (16, 5), (128, None)])
def test_emulated_kernel_matches_reference(rng, tile, shards):
    users, items = random_problem(rng, 12, 400, 8)
    excl = random_exclusion(rng, 12, 400, density=0.2, full_rows=(4,))
    got = _run(users, items, 25, excl, 0.5, tile=tile, shards=shards)
    assert_topk_matches(got, users, items, 25, exclude=excl, temperature=0.5)


@pytest.mark.parametrize("tile,shards", [(8, 1), (8, 4)])
def test_emulated_kernel_exact_ties(rng, tile, shards):
    users = rng.integers(-2, 3, size=(10, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(300, 3)).astype(np.float32)
    got = _run(users, items, 40, None, 1.0, tile=tile, shards=shards)
    assert_topk_matches(got, users, items, 40, exact_ids=True)


def test_emulated_kernel_padding_and_empty_rows(rng):
    users, items = random_problem(rng, 6, 30, 4)
    excl = random_exclusion(rng, 6, 30, density=0.5, full_rows=(0, 3))
    got = _run(users, items, 50, excl, 1.0, tile=8, shards=2)
    assert_topk_matches(got, users, items, 50, exclude=excl)


@pytest.mark.parametrize("tile,shards", [(8, 1), (8, 3), (16, 2)])
def test_emulated_kernel_item_mask(rng, tile, shards):
    """Allow / ban in the kernel: masked items are never listed and not in the normaliser; runs of masked tiles
    are skipped with exclusions inside them (the cursor passes over their ids), ragged last tiles, k > eligible."""
    n_users, n_items = 9, 300
    users, items = random_problem(rng, n_users, n_items, 6)
    excl = random_exclusion(rng, n_users, n_items, density=0.25, full_rows=(5,))
    allow = np.concatenate([np.arange(0, 40), np.arange(120, 133), np.arange(290, 300)])  # whole tiles unlisted
    ban = rng.random(n_items) < 0.2
    for filters in ({"allow": allow}, {"ban": ban}, {"allow": allow, "ban": ban}):
        got = _run(users, items, 25, excl, 0.5, tile=tile, shards=shards, **filters)
        expected_excl = _with_filters_excluded(excl, n_users, n_items, **filters)
        assert_topk_matches(got, users, items, 25, exclude=expected_excl, temperature=0.5)
    # More slots than eligible items: padding; an allow-list inside the excluded ids: all rows empty.
    got = _run(users, items, 80, excl, 1.0, tile=tile, shards=shards, allow=allow)
    assert_topk_matches(got, users, items, 80, exclude=_with_filters_excluded(excl, n_users, n_items, allow=allow))
    every = sp.csr_matrix(np.ones((n_users, n_items)))
    got = _run(users, items, 5, every, 1.0, tile=tile, shards=shards, allow=allow)
    assert np.all(got.indices == -1) and np.all(np.isneginf(got.log_normalizer))
    got = _run(users, items, 5, None, 1.0, tile=tile, shards=shards, allow=np.zeros(n_items, dtype=bool))
    assert np.all(got.indices == -1) and np.all(np.isneginf(got.log_normalizer))


def test_emulated_kernel_exclusions_inside_skipped_tiles(rng):
    """Every excluded id lies in a tile the mask skips: reading them at the next scored tile must not mark
    a column there (a negative offset would wrap onto an eligible item)."""
    users, items = random_problem(rng, 4, 64, 3)
    allow = np.arange(32, 64)  # tiles 0..3 of 8 items skipped, 4..7 scored
    excl = sp.csr_matrix((np.ones(4 * 6), (np.repeat(np.arange(4), 6), np.tile(np.arange(25, 31), 4))), (4, 64))
    got = _run(users, items, 32, excl, 1.0, tile=8, shards=1, allow=allow)
    assert_topk_matches(got, users, items, 32, exclude=_with_filters_excluded(excl, 4, 64, allow=allow), exact_ids=True)


def test_emulated_kernel_normalizer_off_keeps_the_lists(rng):
    users, items = random_problem(rng, 8, 350, 5)
    excl = random_exclusion(rng, 8, 350, density=0.2, full_rows=(2,))
    ban = rng.choice(350, size=60, replace=False)
    with_norm = _run(users, items, 30, excl, 0.3, tile=16, shards=3, ban=ban)
    without = _run(users, items, 30, excl, 0.3, tile=16, shards=3, ban=ban, normalizer=False)
    np.testing.assert_array_equal(without.indices, with_norm.indices)
    np.testing.assert_array_equal(without.scores, with_norm.scores)
    assert without.log_normalizer is None


def test_key_encoding_matches_the_cpu_keys(rng):
    from mmrec_fast import _keys

    scores = rng.standard_normal(1000).astype(np.float32)
    scores[::7] = 0.0
    ours = make_keys(scores, 0)
    cpu = _keys.encode(scores, np.arange(1000))
    np.testing.assert_array_equal(ours, cpu)
    for key, s, i in zip(ours[:50], scores[:50], range(50)):
        assert decode_key(int(key)) == (float(s), i)


# ------------------------------------------------------------------------------------------------
# The cuda backend's Python side against a fake extension: "device" buffers are host memory, and the
# fake `topk` -- same positional signature as csrc/cuda/module.cpp -- reads the pointers it is given
# and runs the emulation above. This checks the plumbing no CPU machine can otherwise reach: pointer
# and argument order, capacity, uploads/downloads, output shapes and families, padding, errors.


class _FakeDeviceBuffer:
    def __init__(self, nbytes, device):
        self._mem = np.zeros(max(1, nbytes), dtype=np.uint8)
        self.nbytes, self.device = nbytes, device

    @property
    def ptr(self):
        return self._mem.ctypes.data

    def upload(self, array):
        raw = np.ascontiguousarray(array).view(np.uint8).reshape(-1)
        self._mem[: raw.size] = raw

    def download(self, array):
        raw = array.view(np.uint8).reshape(-1)
        raw[:] = self._mem[: raw.size]


def _view(ptr, dtype, count):
    import ctypes

    if count == 0:
        return np.zeros(0, dtype=dtype)
    nbytes = count * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_char * nbytes).from_address(ptr), dtype=dtype, count=count)


class _FakeCuda:
    def __init__(self, max_k=16384):
        self._max_k = max_k
        self.calls = []
        self.buffers = []  # every DeviceBuffer made (the mask cache's uploads among them)

    def DeviceBuffer(self, nbytes, device):  # noqa: N802 (the extension's class name)
        buffer = _FakeDeviceBuffer(nbytes, device)
        self.buffers.append(buffer)
        return buffer

    def abi_version(self):
        return 2

    def device_count(self):
        return 1, ""

    def device_info(self, device):
        return "Fake GPU", 9, 0

    def runtime_version(self):
        return 13000

    def max_k(self):
        return self._max_k

    def topk(
        self,
        users,
        n_users,
        items,
        n_items,
        dim,
        dtype,
        k,
        inv_temperature,
        excl_indptr,
        excl_indices,
        item_mask,
        normalizer,
        capacity,
        workspace_bytes,
        out_indices,
        out_scores,
        out_lse,
        device,
        stream,
        synchronize,
    ):
        assert dtype == 0 and 1 <= k <= min(n_items, self._max_k) and capacity >= k + 128
        assert isinstance(item_mask, int) and isinstance(normalizer, bool)
        u = _view(users, np.float32, n_users * dim).reshape(n_users, dim)
        v = _view(items, np.float32, n_items * dim).reshape(n_items, dim)
        indptr = _view(excl_indptr, np.int64, n_users + 1)
        indices = _view(excl_indices, np.int64, int(indptr[-1])) if excl_indices else np.zeros(0, np.int64)
        mask = _view(item_mask, np.uint8, n_items).copy() if item_mask else None
        self.calls.append(
            dict(
                n_users=n_users,
                k=k,
                capacity=capacity,
                stream=stream,
                synchronize=synchronize,
                mask_ptr=item_mask,
                mask=mask,
                normalizer=normalizer,
                nnz=int(indptr[-1]),
            )
        )
        shards, shard_len = plan(n_users, n_items, k, capacity, sm_count=2)
        idx, sc, lse = emulate_kernel(
            u,
            v,
            k,
            inv_temperature,
            indptr,
            indices,
            tile=128,
            capacity=capacity,
            shards=shards,
            shard_len=shard_len,
            mask=mask,
            normalizer=normalizer,
        )
        _view(out_indices, np.int64, n_users * k)[:] = idx.reshape(-1)
        _view(out_scores, np.float32, n_users * k)[:] = sc.reshape(-1)
        _view(out_lse, np.float64, n_users)[:] = lse


@pytest.fixture
def fake_cuda_backend(monkeypatch):
    import importlib
    import sys

    import mmrec_fast
    from mmrec_fast import backends

    fake = _FakeCuda()
    monkeypatch.setitem(sys.modules, "mmrec_fast._cuda", fake)
    monkeypatch.setattr(mmrec_fast, "_cuda", fake, raising=False)
    monkeypatch.delitem(sys.modules, "mmrec_fast.backends.cuda_backend", raising=False)
    module = importlib.import_module("mmrec_fast.backends.cuda_backend")
    monkeypatch.setitem(backends._loaded, "cuda", module)
    monkeypatch.delitem(backends._failures, "cuda", raising=False)
    yield module, fake
    sys.modules.pop("mmrec_fast.backends.cuda_backend", None)


def _writable_views():
    # np.frombuffer over ctypes memory is writable; make sure (the fake writes outputs through it).
    import ctypes

    buf = (ctypes.c_char * 8)()
    assert np.frombuffer(buf, dtype=np.uint8).flags.writeable


def test_cuda_backend_host_path_with_fake_extension(rng, fake_cuda_backend):
    _writable_views()
    module, fake = fake_cuda_backend
    assert mf.available_backends()["cuda"].available
    assert "Fake GPU" in mf.available_backends()["cuda"].detail
    users, items = random_problem(rng, 20, 600, 8)
    excl = random_exclusion(rng, 20, 600, density=0.1, full_rows=(2,))
    got = mf.topk(users, items, 30, exclude=excl, temperature=0.5, backend="cuda")
    assert isinstance(got.indices, np.ndarray)
    assert_topk_matches(got, users, items, 30, exclude=excl, temperature=0.5)
    assert fake.calls[-1]["synchronize"] and fake.calls[-1]["capacity"] == max(60, 30 + 128)
    # A persistent index (items uploaded once), queried twice; padding when k > I.
    index = mf.ItemIndex(items[:40], backend="cuda")
    for _ in range(2):
        padded = index.topk(users, 55)
        assert_topk_matches(padded, users, items[:40], 55)
    assert fake.calls[-1]["k"] == 40  # the kernel never sees more than I slots


def test_cuda_backend_item_mask_reaches_the_kernel(rng, fake_cuda_backend):
    """allow / ban reach the kernel as its item mask (not folded into every user's exclusions)."""
    module, fake = fake_cuda_backend
    users, items = random_problem(rng, 10, 400, 6)
    excl = random_exclusion(rng, 10, 400, density=0.1, full_rows=(4,))
    ban = rng.choice(400, size=130, replace=False)
    allow = np.arange(100, 330)
    got = mf.topk(users, items, 20, exclude=excl, ban=ban, allow=allow, backend="cuda")
    call = fake.calls[-1]
    assert call["mask_ptr"] and call["nnz"] == excl.nnz  # the exclusions are the caller's own
    expected = np.zeros(400, dtype=np.uint8)
    expected[allow] = 1
    expected[ban] = 0
    np.testing.assert_array_equal(call["mask"], expected)
    assert_topk_matches(got, users, items, 20, exclude=_with_filters_excluded(excl, 10, 400, allow=allow, ban=ban))
    mf.topk(users, items, 20, exclude=excl, backend="cuda")
    assert fake.calls[-1]["mask_ptr"] == 0 and fake.calls[-1]["normalizer"]  # no filter: no mask


def test_cuda_backend_normalizer_flag_reaches_the_kernel(rng, fake_cuda_backend):
    module, fake = fake_cuda_backend
    users, items = random_problem(rng, 6, 300, 5)
    ban = rng.random(300) < 0.3
    full = mf.topk(users, items, 12, ban=ban, backend="cuda")
    fast = mf.topk(users, items, 12, ban=ban, normalizer=False, backend="cuda")
    assert fake.calls[-1]["normalizer"] is False and fast.log_normalizer is None
    np.testing.assert_array_equal(fast.indices, full.indices)
    np.testing.assert_array_equal(fast.scores, full.scores)
    assert_topk_matches(full, users, items, 12, exclude=_with_filters_excluded(None, 6, 300, ban=ban))


def test_cuda_backend_mask_upload_is_cached_by_content(rng, fake_cuda_backend):
    """One upload per distinct mask (per device and stream); a caller's mask changed in place is re-uploaded."""
    module, fake = fake_cuda_backend
    module.BACKEND.masks.clear()
    users, items = random_problem(rng, 5, 260, 4)
    index = mf.ItemIndex(items, backend="cuda")
    allow = np.zeros(260, dtype=bool)
    allow[:90] = True

    def mask_uploads():
        return sum(1 for b in fake.buffers if b.nbytes == 260)

    before = mask_uploads()
    first = index.topk(users, 10, allow=allow)
    again = index.topk(users, 10, allow=allow.copy())  # another array, the same bytes: reused
    assert mask_uploads() == before + 1
    assert fake.calls[-1]["mask_ptr"] == fake.calls[-2]["mask_ptr"]
    np.testing.assert_array_equal(first.indices, again.indices)
    allow[:90] = False
    allow[200:] = True  # the caller's array, changed in place
    moved = index.topk(users, 10, allow=allow)
    assert mask_uploads() == before + 2
    assert_topk_matches(moved, users, items, 10, exclude=_with_filters_excluded(None, 5, 260, allow=allow))
    with pytest.raises(ValueError, match="item_mask"):
        module.BACKEND.topk_arrays(
            users,
            index.prepared,
            3,
            1.0,
            np.zeros(6, np.int64),
            np.zeros(0, np.int64),
            mf.BlockConfig(),
            item_mask=np.ones(5, dtype=np.uint8),
        )


def test_cuda_backend_torch_cpu_tensors_with_fake_extension(rng, fake_cuda_backend):
    torch = pytest.importorskip("torch", reason="torch not installed")
    users, items = random_problem(rng, 9, 300, 6)
    got = mf.topk(torch.from_numpy(users), torch.from_numpy(items).half(), 7, backend="cuda")
    assert isinstance(got.indices, torch.Tensor) and got.indices.device.type == "cpu"
    assert got.probs.dtype == torch.float32
    expected = mf.topk(users, items.astype(np.float16).astype(np.float32), 7, backend="numpy")
    np.testing.assert_array_equal(got.indices.numpy(), expected.indices)


def test_cuda_backend_rejects_k_beyond_its_limit(rng, fake_cuda_backend, monkeypatch):
    module, fake = fake_cuda_backend
    monkeypatch.setattr(module, "MAX_K", 8)
    users, items = random_problem(rng, 3, 50, 4)
    with pytest.raises(ValueError, match="k: the cuda backend supports k <= 8"):
        mf.topk(users, items, 10, backend="cuda")


# ------------------------------------------------------------------------------------------------
# The real kernels (csrc/cuda/topk_kernel.cu: float32 SIMT and 16-bit WMMA) with filters, on a GPU.


def _require_cuda():
    status = mf.available_backends()["cuda"]
    if not status.available:
        pytest.skip(f"no usable CUDA backend: {status.detail}")


def _as_numpy_topk(result, temperature):
    """A TopK of torch tensors as NumPy (the log-normaliser may be None)."""
    lse = result.log_normalizer
    return mf.TopK(
        result.indices.cpu().numpy(),
        result.scores.cpu().numpy(),
        None if lse is None else lse.cpu().numpy(),
        temperature,
    )


@pytest.mark.gpu
@pytest.mark.parametrize("family", ["numpy", "torch"])
def test_kernel_filters_on_gpu(rng, family):
    """allow / ban in the kernel against the reference: runs of skipped tiles with exclusions inside them, ragged
    shards, k beyond the eligible count, everything filtered; normalizer=False gives the same lists."""
    _require_cuda()
    n_users, n_items = 150, 5000
    users, items = random_problem(rng, n_users, n_items, 40)
    excl = random_exclusion(rng, n_users, n_items, density=0.05, full_rows=(7,))
    allow = np.concatenate([np.arange(100, 300), np.arange(2000, 2050), np.arange(4990, 5000)])
    ban = rng.random(n_items) < 0.1
    u, v = users, items
    if family == "torch":
        torch = pytest.importorskip("torch", reason="torch not installed")
        u, v = torch.from_numpy(users).cuda(), torch.from_numpy(items).cuda()
    for filters in ({"allow": allow}, {"ban": ban}, {"allow": allow, "ban": ban}):
        got = mf.topk(u, v, 70, exclude=excl, temperature=0.5, backend="cuda", **filters)
        fast = mf.topk(u, v, 70, exclude=excl, temperature=0.5, backend="cuda", normalizer=False, **filters)
        if family == "torch":
            got, fast = _as_numpy_topk(got, 0.5), _as_numpy_topk(fast, 0.5)
        expected = _with_filters_excluded(excl, n_users, n_items, **filters)
        assert_topk_matches(got, users, items, 70, exclude=expected, temperature=0.5)
        assert fast.log_normalizer is None
        np.testing.assert_array_equal(fast.indices, got.indices)
        np.testing.assert_array_equal(fast.scores, got.scores)
    got = mf.topk(u, v, 300, exclude=excl, allow=allow[:250], backend="cuda")  # k > eligible: padding
    if family == "torch":
        got = _as_numpy_topk(got, 1.0)
    expected = _with_filters_excluded(excl, n_users, n_items, allow=allow[:250])
    assert_topk_matches(got, users, items, 300, exclude=expected)
    none = mf.topk(u, v, 5, allow=np.zeros(n_items, dtype=bool), backend="cuda")
    if family == "torch":
        none = _as_numpy_topk(none, 1.0)
    assert np.all(none.indices == -1) and np.all(np.isneginf(none.log_normalizer))


@pytest.mark.gpu
def test_kernel_filters_on_gpu_16bit_inputs(rng):
    _require_cuda()
    torch = pytest.importorskip("torch", reason="torch not installed")
    users, items = random_problem(rng, 90, 2500, 24)
    ban = rng.random(2500) < 0.3
    allow = np.arange(500, 1800)
    for dtype in (torch.float16, torch.bfloat16):
        hu, hv = torch.from_numpy(users).cuda().to(dtype), torch.from_numpy(items).cuda().to(dtype)
        got = _as_numpy_topk(mf.topk(hu, hv, 50, allow=allow, ban=ban, temperature=2.0, backend="cuda"), 2.0)
        expected = _with_filters_excluded(None, 90, 2500, allow=allow, ban=ban)
        u32, v32 = hu.float().cpu().numpy(), hv.float().cpu().numpy()
        assert_topk_matches(got, u32, v32, 50, exclude=expected, temperature=2.0)
        fast = mf.topk(hu, hv, 50, allow=allow, ban=ban, normalizer=False, backend="cuda")
        assert fast.log_normalizer is None
        np.testing.assert_array_equal(fast.indices.cpu().numpy(), got.indices)
