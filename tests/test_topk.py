"""topk on every backend against the float64 reference: shapes, k, exclusion, ties, dtypes, layouts."""

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast.testing import BACKENDS, assert_topk_matches, random_exclusion, random_problem

SHAPES = [  # (U, I, d, k)
    (1, 1, 1, 1),
    (1, 7, 3, 10),  # k > I
    (5, 9, 4, 9),  # k == I
    (37, 101, 7, 5),  # ragged everything
    (64, 1000, 1, 10),  # d = 1: many near-ties
    (200, 1000, 64, 10),
    (50, 300, 512, 300),  # d = 512, k = I
    (33, 2500, 16, 4096),  # huge k, beyond I
]
BLOCKS = [  # (user_block, item_block): defaults, tiny ragged tiles, single item per block
    (None, None),
    (3, 5),
    (1, 1),
    (17, 130),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "U{}-I{}-d{}-k{}".format(*s))
@pytest.mark.parametrize("with_exclusion", [False, True], ids=["all", "excl"])
def test_matches_reference(backend, shape, with_exclusion, rng):
    n_users, n_items, dim, k = shape
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = (
        random_exclusion(rng, n_users, n_items, 0.2, full_rows=[0] if n_users > 2 else ()) if with_exclusion else None
    )
    result = mf.topk(users, items, k, exclude=exclude, backend=backend)
    assert_topk_matches(result, users, items, k, exclude=exclude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blocks", BLOCKS, ids=lambda b: f"ub{b[0]}-ib{b[1]}")
@pytest.mark.parametrize("k", [1, 7, 64])
def test_block_sizes(backend, blocks, k, rng):
    users, items = random_problem(rng, 23, 411, 13)
    exclude = random_exclusion(rng, 23, 411, 0.3, full_rows=[5])
    result = mf.topk(users, items, k, exclude=exclude, backend=backend, user_block=blocks[0], item_block=blocks[1])
    assert_topk_matches(result, users, items, k, exclude=exclude)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1e-3, 0.05, 1.0, 7.5, 1e6])
def test_temperature(backend, temperature, rng):
    users, items = random_problem(rng, 40, 700, 8)
    result = mf.topk(users, items, 10, temperature=temperature, backend=backend)
    assert result.temperature == temperature
    assert_topk_matches(result, users, items, 10, temperature=temperature)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("blocks", [(None, None), (3, 5)], ids=["default", "tiny"])
def test_ties_go_to_lower_index(backend, blocks, rng):
    # Small integers: float32 scores are exact, so ties are real and the order is fully determined.
    users = rng.integers(-2, 3, size=(60, 3)).astype(np.float32)
    items = rng.integers(-2, 3, size=(500, 3)).astype(np.float32)
    exclude = random_exclusion(rng, 60, 500, 0.1)
    for k in (1, 5, 50, 499, 600):
        result = mf.topk(users, items, k, exclude=exclude, backend=backend, user_block=blocks[0], item_block=blocks[1])
        assert_topk_matches(result, users, items, k, exclude=exclude, exact_ids=True)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_equal_scores(backend):
    users = np.ones((4, 3), dtype=np.float32)
    items = np.ones((1000, 3), dtype=np.float32)
    result = mf.topk(users, items, 5, backend=backend, item_block=7)
    np.testing.assert_array_equal(result.indices, np.tile(np.arange(5), (4, 1)))
    np.testing.assert_allclose(result.log_normalizer, 3 + np.log(1000), rtol=1e-6)
    np.testing.assert_allclose(result.probs, 1e-3, rtol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_fully_excluded_user(backend, rng):
    users, items = random_problem(rng, 3, 20, 4)
    exclude = sp.csr_matrix(np.array([[0] * 20, [1] * 20, [1] * 19 + [0]]))
    result = mf.topk(users, items, 3, exclude=exclude, backend=backend)
    assert np.all(result.indices[1] == -1) and np.all(np.isneginf(result.scores[1]))
    assert np.isneginf(result.log_normalizer[1]) and np.all(result.probs[1] == 0)
    np.testing.assert_array_equal(result.indices[2], [19, -1, -1])
    np.testing.assert_allclose(result.probs[2], [1, 0, 0], rtol=1e-6)
    assert_topk_matches(result, users, items, 3, exclude=exclude)


@pytest.mark.parametrize("backend", BACKENDS)
def test_exclusion_formats_agree(backend, rng):
    users, items = random_problem(rng, 30, 200, 6)
    base = random_exclusion(rng, 30, 200, 0.25)
    expected = mf.topk(users, items, 8, exclude=base, backend=backend)
    # Unsorted rows with duplicates, as (indptr, indices) lists.
    indptr, indices = [0], []
    for row in range(30):
        ids = list(base[row].indices)[::-1]
        ids = ids + ids[:2]
        indices += ids
        indptr.append(len(indices))
    variants = [
        base.tocsc(),
        base.tocoo(),
        sp.csr_array(base),
        (np.array(indptr), np.array(indices)),
        (indptr, indices),
    ]
    for variant in variants:
        got = mf.topk(users, items, 8, exclude=variant, backend=backend)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.log_normalizer, expected.log_normalizer)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64, np.int32])
def test_input_dtypes(backend, dtype, rng):
    users, items = random_problem(rng, 20, 300, 8, scale=3.0)
    users, items = users.astype(dtype), items.astype(dtype)
    result = mf.topk(users, items, 10, backend=backend)
    assert_topk_matches(result, users, items, 10, exact_ids=dtype == np.int32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_layouts(backend, rng):
    users, items = random_problem(rng, 41, 333, 9)
    expected = mf.topk(users, items, 6, backend=backend)
    layouts = [
        (np.asfortranarray(users), np.asfortranarray(items)),
        (np.repeat(users, 2, axis=1)[:, ::2], items[::-1].copy()[::-1]),
        (np.repeat(users, 2, axis=0)[::2], np.asfortranarray(items)),
    ]
    for u, v in layouts:
        np.testing.assert_array_equal(u, users)
        got = mf.topk(u, v, 6, backend=backend)
        np.testing.assert_array_equal(got.indices, expected.indices)
        np.testing.assert_array_equal(got.scores, expected.scores)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("magnitude", [1e-18, 1e-3, 1e3, 1e9, 1e17])
def test_adversarial_magnitudes(backend, magnitude, rng):
    users, items = random_problem(rng, 16, 400, 8, scale=magnitude)
    temperature = max(1.0, magnitude**2)  # keep exp() meaningful; the order must hold at any scale
    result = mf.topk(users, items, 12, temperature=temperature, backend=backend)
    assert_topk_matches(result, users, items, 12, temperature=temperature)
    raw = mf.topk(users, items, 12, backend=backend)  # huge scores, temperature 1: one-hot softmax
    assert np.all(np.isfinite(raw.log_normalizer))
    assert np.all(np.isfinite(raw.probs)) and np.all(raw.probs <= 1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("temperature", [1.0, 3.0, 0.7])
def test_huge_scaled_scores_keep_a_real_softmax(backend, temperature, rng):
    # Scores / T beyond 1.2e7, where float32 has no fraction bits left, but spaced 12 / T apart: the
    # softmax over the top few is not one-hot, and every backend must still get it right (a float
    # reference exponent there is too coarse: its rounding alone used to overflow the exp-sum).
    # d = 1, user 1.0 and multiples of 4 near 3.6e7 keep every score exact, so the reference is tight.
    n_items = 300
    items = rng.standard_normal((n_items, 1)).astype(np.float32)  # ordinary scores ...
    near = rng.choice(n_items, 6, replace=False)  # ... and six huge ones,
    items[near, 0] = (3.6e7 + 12.0 * np.arange(6)).astype(np.float32)  # spread over the blocks
    users = np.array([[1.0], [-1.0], [0.0]], dtype=np.float32)  # huge, tiny, all equal
    for item_block in (None, 16):
        result = mf.topk(users, items, 8, temperature=temperature, backend=backend, item_block=item_block)
        assert_topk_matches(result, users, items, 8, temperature=temperature)
        np.testing.assert_array_equal(np.asarray(result.indices)[0, :6], near[np.argsort(-items[near, 0])])
        if backend != "native":
            continue  # float32 s / T itself rounds to a multiple of 4 here: the contract's tolerance only
        # The native engine subtracts the top score before scaling (exact near the top), so it keeps
        # the normaliser and the probabilities to float precision even here.
        scores = users.astype(np.float64) @ items.T.astype(np.float64) / temperature
        top = scores.max(axis=1)
        lse = top + np.log(np.exp(scores - top[:, None]).sum(axis=1))
        np.testing.assert_allclose(np.asarray(result.log_normalizer) - top, lse - top, rtol=0, atol=1e-5)
        probs = np.exp(np.take_along_axis(scores, np.asarray(result.indices), axis=1) - lse[:, None])
        np.testing.assert_allclose(np.asarray(result.probs, dtype=np.float64), probs, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_users_and_no_items(backend, rng):
    users, items = random_problem(rng, 0, 50, 4)
    result = mf.topk(users, items, 3, backend=backend)
    assert result.indices.shape == (0, 3)
    users, items = random_problem(rng, 4, 0, 4)
    result = mf.topk(users, items, 3, backend=backend)
    assert np.all(result.indices == -1) and np.all(np.isneginf(result.log_normalizer))


@pytest.mark.parametrize("backend", BACKENDS)
def test_deterministic_across_runs_and_threads(backend, rng):
    users, items = random_problem(rng, 300, 3000, 32)
    exclude = random_exclusion(rng, 300, 3000, 0.05)
    runs = [mf.topk(users, items, 20, exclude=exclude, backend=backend, num_threads=t) for t in (1, 2, 1, 2)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other.indices, runs[0].indices)
        np.testing.assert_array_equal(other.scores, runs[0].scores)
        np.testing.assert_array_equal(other.log_normalizer, runs[0].log_normalizer)


@pytest.mark.parametrize("backend", BACKENDS)
def test_item_index_reuse(backend, rng):
    users, items = random_problem(rng, 50, 800, 16)
    index = mf.ItemIndex(items, backend=backend, item_block=100)
    assert index.backend_name == backend and index.n_items == 800 and index.dim == 16
    first = index.topk(users[:20], 5)
    second = index.topk(users, 5)
    direct = mf.topk(users, items, 5, backend=backend, item_block=100)
    np.testing.assert_array_equal(second.indices, direct.indices)
    np.testing.assert_array_equal(first.indices, direct.indices[:20])
    assert_topk_matches(second, users, items, 5)


def test_backends_agree_with_each_other(rng):
    users, items = random_problem(rng, 120, 5000, 24)
    exclude = random_exclusion(rng, 120, 5000, 0.02)
    results = {
        name: mf.topk(users, items, 25, exclude=exclude, backend=name)
        for name, s in mf.available_backends().items()
        if s.available
    }
    base = results.pop("numpy")
    for name, result in results.items():
        same = (result.indices == base.indices).mean()
        assert same > 0.999, f"{name} agrees with numpy on only {same:.2%} of ids"


@pytest.mark.parametrize("backend", BACKENDS)
def test_merge_of_item_shards_is_exact(backend, rng):
    users, items = random_problem(rng, 70, 1000, 12)
    whole = mf.topk(users, items, 15, backend=backend)
    parts = []
    for lo, hi in [(0, 333), (333, 340), (340, 1000)]:
        part = mf.topk(users, items[lo:hi], 15, backend=backend)
        parts.append(mf.TopK(np.where(part.indices >= 0, part.indices + lo, -1), part.scores, part.log_normalizer))
    merged = mf.merge_topk(parts)
    if backend in ("native", "numba"):
        # Their dot products do not depend on the block a score was computed in: bitwise equal.
        np.testing.assert_array_equal(merged.indices, whole.indices)
        np.testing.assert_array_equal(merged.scores, whole.scores)
        np.testing.assert_allclose(merged.log_normalizer, whole.log_normalizer, atol=1e-6)
    else:
        # BLAS tiles round differently for different shard shapes (OpenBLAS kernels by shape and
        # CPU): the merge is exact on what the parts hold, so compare with the reference instead.
        assert_topk_matches(merged, users, items, 15)


def test_torch_tensor_inputs(rng):
    torch = pytest.importorskip("torch", reason="torch not installed")
    users, items = random_problem(rng, 12, 300, 8)
    expected = mf.topk(users, items, 5)
    got = mf.topk(torch.from_numpy(users), torch.from_numpy(items).T.contiguous().T, 5)  # strided tensor
    np.testing.assert_array_equal(got.indices, expected.indices)
    half = mf.topk(torch.from_numpy(users).half(), torch.from_numpy(items).half(), 5)
    assert_topk_matches(half, users.astype(np.float16), items.astype(np.float16), 5)
    with pytest.raises(ValueError, match="users: contains NaN"):
        mf.topk(torch.full((2, 8), float("nan")), items, 5)
