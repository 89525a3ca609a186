"""Adversarial engine cases (issue 14): every reproducer that once gave a wrong answer or a bad error,
and a hypothesis suite over the CPU backends and forced native SIMD levels at the extremes.

Each case is compared with the float64 reference (:func:`testing.assert_topk_matches`) or checked
for a ``ValueError``/``TypeError`` that names the argument.
"""

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmrec_fast as mf
from mmrec_fast.result import probabilities
from mmrec_fast.testing import assert_topk_matches

CPU = [name for name in ("native", "numba", "numpy", "torch") if mf.available_backends()[name].available]
CPU_PARAMS = [pytest.param(name, id=name) for name in CPU]


def _native_levels():
    if "native" not in CPU:
        return []
    from mmrec_fast import _native

    return list(_native.supported_simd_levels())


def _check_invariants(result, temperature):
    """What must hold at any magnitude: lse >= top / T, probabilities in [0, 1], top probability > 0."""
    live = np.isfinite(result.log_normalizer)
    top = result.scores[:, 0].astype(np.float64) * (1.0 / temperature)
    assert np.all(result.log_normalizer[live] >= top[live]), "log_normalizer below the top term"
    assert np.all((result.probs >= 0) & (result.probs <= 1)), "probability outside [0, 1]"
    assert np.all(result.probs[live, 0] > 0), "the best item has probability 0"


# -- 2. exclusion lists are never guessed ----------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_PARAMS)
def test_exclude_list_of_two_user_lists_is_per_user(backend, rng):
    users, items = rng.normal(size=(2, 4)), rng.normal(size=(10, 4))
    got = mf.topk(users, items, 10, exclude=[[0, 1, 2], [5, 7]], backend=backend)
    assert set(got.indices[0][got.indices[0] >= 0]) == set(range(3, 10))
    assert set(got.indices[1][got.indices[1] >= 0]) == set(range(10)) - {5, 7}
    csr = mf.topk(users, items, 10, exclude=(np.array([0, 3, 5]), np.array([0, 1, 2, 5, 7])), backend=backend)
    np.testing.assert_array_equal(got.indices, csr.indices)


def test_exclude_list_errors_name_the_argument(rng):
    users, items = rng.normal(size=(3, 4)), rng.normal(size=(10, 4))
    with pytest.raises(ValueError, match="exclude: a list must hold one id sequence per user"):
        mf.topk(users, items, 3, exclude=[[0, 1], [2]])
    with pytest.raises(ValueError, match=r"exclude: id 10 out of range"):
        mf.topk(users, items, 3, exclude=[[0], [10], []])
    with pytest.raises(ValueError, match=r"exclude\[1\]: expected a 1-D"):
        mf.topk(users, items, 3, exclude=[[0], [[1, 2]], []])


# -- 4. masked arrays --------------------------------------------------------------------------------
def test_masked_arrays_refused_unless_nothing_is_masked(rng):
    users, items = rng.normal(size=(2, 4)), rng.normal(size=(20, 4))
    masked = np.ma.masked_invalid(np.where(np.eye(20, 4) > 0, np.nan, items))
    for call in (
        lambda: mf.topk(users, masked, 3),
        lambda: mf.score(users, masked),
        lambda: mf.topk(np.ma.masked_array(users, mask=[[1, 0, 0, 0], [0] * 4]), items, 3),
    ):
        with pytest.raises(ValueError, match="(items|users): masked arrays with masked entries"):
            call()
    clean = mf.topk(users, np.ma.masked_array(items, mask=False), 3)
    np.testing.assert_array_equal(clean.indices, mf.topk(users, items, 3).indices)


# -- 5. small and huge temperatures: normaliser and probabilities from the same scaled scores -------
@pytest.mark.parametrize("backend", CPU_PARAMS)
@pytest.mark.parametrize("temperature", [1e-8, 1e-6, 1e-3, 1.0, 1e3, 1e8])
def test_temperature_range_matches_reference(backend, temperature, rng):
    users = (rng.standard_normal((6, 8)) / 3).astype(np.float32)
    items = (rng.standard_normal((700, 8)) / 3).astype(np.float32)
    result = mf.topk(users, items, 10, temperature=temperature, backend=backend)
    assert_topk_matches(result, users, items, 10, temperature=temperature)
    _check_invariants(result, temperature)
    if temperature <= 1e-6:  # one item dominates: probability 1 (within float32), like the reference
        np.testing.assert_allclose(result.probs[:, 0], 1.0, rtol=1e-6)


@pytest.mark.parametrize("backend", CPU_PARAMS)
def test_temperature_beyond_float32_reciprocal(backend, rng):
    users, items = rng.normal(size=(3, 4)), rng.normal(size=(50, 4))
    result = mf.topk(users, items, 5, temperature=1e45, backend=backend, exclude=[[0], [], [1, 2]])
    counts = np.array([49, 50, 48])
    np.testing.assert_allclose(result.log_normalizer, np.log(counts), rtol=1e-6)
    np.testing.assert_allclose(result.probs, np.repeat(1 / counts, 5).reshape(3, 5), rtol=1e-5)


# -- 6. extreme magnitudes: the top item keeps its probability -------------------------------------
@pytest.mark.parametrize("backend", CPU_PARAMS)
@pytest.mark.parametrize("sign", ["mixed", "all-negative"])
def test_extreme_magnitudes_keep_top_probability(backend, sign):
    # Negative top scores at |s / T| ~ 1e15..1e36 once put the native normaliser a float64 step above
    # the top term (probability 0 for the best item in ~10% of draws).
    rng = np.random.default_rng(7)
    for _ in range(40):
        magnitude = 10 ** rng.uniform(15, 36)
        users = rng.normal(size=(2, 4)).astype(np.float32)
        items = rng.normal(size=(50, 4)).astype(np.float32)
        if sign == "all-negative":
            users, items = np.abs(users), -np.abs(items)
        items *= np.float32(magnitude / (4 * np.abs(users).max() * np.abs(items).max()))
        result = mf.topk(users, items, 3, backend=backend)
        _check_invariants(result, 1.0)


# -- 7. an index owns what it validated ------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_PARAMS)
def test_item_index_is_immune_to_later_mutation(backend, rng):
    items = rng.normal(size=(100, 8)).astype(np.float32)
    users = rng.normal(size=(3, 8)).astype(np.float32)
    index = mf.ItemIndex(items, backend=backend)
    before = index.topk(users, 5)
    items[:] = np.nan
    after = index.topk(users, 5)
    np.testing.assert_array_equal(before.indices, after.indices)
    np.testing.assert_array_equal(before.scores, after.scores)
    assert not np.isnan(mf.score_pairs(users, index, [0], [0]).scores).any()


def test_item_index_owns_torch_input(rng):
    torch = pytest.importorskip("torch", reason="torch not installed")
    items = torch.from_numpy(rng.normal(size=(60, 4)).astype(np.float32))
    index = mf.ItemIndex(items, backend="torch")
    users = rng.normal(size=(2, 4)).astype(np.float32)
    before = index.topk(users, 3)
    items.fill_(float("nan"))
    np.testing.assert_array_equal(np.asarray(index.topk(users, 3).indices), np.asarray(before.indices))


# -- 8. merge: zeros tie, shards are disjoint, arguments are checked -------------------------------
def test_merge_orders_signed_zeros_as_equal():
    a = mf.TopK(np.array([[5]]), np.array([[-0.0]], dtype=np.float32), np.array([0.0]))
    b = mf.TopK(np.array([[9]]), np.array([[0.0]], dtype=np.float32), np.array([0.0]))
    for parts in ([a, b], [b, a]):
        merged = mf.merge_topk(parts, k=2)
        np.testing.assert_array_equal(merged.indices, [[5, 9]])


@pytest.mark.parametrize("backend", CPU_PARAMS)
def test_engine_orders_signed_zeros_as_equal(backend):
    users = np.array([[1.0, 0.0]], dtype=np.float32)
    items = np.array([[-0.0, 1.0], [0.0, 1.0], [-0.0, -1.0], [0.0, 0.0]], dtype=np.float32)  # scores -0, 0, -0, 0
    result = mf.topk(users, items, 4, backend=backend)
    np.testing.assert_array_equal(result.indices, [[0, 1, 2, 3]])


def test_merge_rejects_overlaps_and_bad_arguments():
    a = mf.TopK(np.array([[1, 2]]), np.array([[2.0, 1.0]], dtype=np.float32), np.array([3.0]))
    with pytest.raises(ValueError, match="parts: item 2 appears in more than one part"):
        mf.merge_topk([a, mf.TopK(np.array([[2, 3]]), np.array([[1.0, 0.5]], dtype=np.float32), np.array([1.0]))])
    with pytest.raises(ValueError, match="k: must be >= 1"):
        mf.merge_topk([a], k=0)
    with pytest.raises(TypeError, match=r"parts\[1\]: expected a TopK"):
        mf.merge_topk([a, (np.array([[3]]), np.array([[1.0]]))])
    with pytest.raises(TypeError, match="parts: expected a sequence of TopK"):
        mf.merge_topk(a)
    padded = mf.TopK(np.array([[4, -1]]), np.array([[1.0, -np.inf]], dtype=np.float32), np.array([1.0]))
    mf.merge_topk(
        [padded, mf.TopK(np.array([[5, -1]]), np.array([[0.0, -np.inf]], dtype=np.float32), np.array([0.0]))]
    )  # -1 padding in two parts is not an overlap


# -- 9. errors, not crashes --------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_PARAMS)
def test_huge_float16_values_are_scored(backend):
    # min + max overflows float16 (the old finite check's IndexError); the scores themselves are fine.
    users = np.array([[60000, 65000]], dtype=np.float16)
    items = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]], dtype=np.float32)
    result = mf.topk(users, items, 3, backend=backend)
    assert_topk_matches(result, users.astype(np.float32), items, 3)


@pytest.mark.parametrize("backend", CPU_PARAMS)
@pytest.mark.parametrize(
    "bad", [np.array([[1e308, 1e308]]), np.array([[2e38, 3e38]], dtype=np.float32)], ids=["f64", "f32"]
)
def test_huge_finite_values_give_a_value_error(backend, bad):
    other = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="(users|items|temperature)"):
        mf.topk(bad, other, 2, backend=backend)
    with pytest.raises(ValueError, match="(users|items|temperature)"):
        mf.topk(other, bad, 2, backend=backend)


def test_absurd_k_is_a_value_error(rng):
    with pytest.raises(ValueError, match="^k: "):
        mf.topk(rng.normal(size=(2, 3)), rng.normal(size=(5, 3)), 10**12)


@pytest.mark.skipif("numba" not in CPU, reason="numba backend unavailable")
def test_numba_huge_item_block_is_clamped(rng):
    users, items = rng.normal(size=(3, 4)), rng.normal(size=(40, 4))
    got = mf.topk(users, items, 5, backend="numba", item_block=2**31, user_block=2**31)
    assert_topk_matches(got, users, items, 5)


# -- hypothesis: extremes on every CPU backend and native SIMD level --------------------------------
@st.composite
def extreme_problems(draw):
    n_users = draw(st.integers(1, 12))
    n_items = draw(st.integers(1, 120))
    dim = draw(st.integers(1, 20))
    k = draw(st.integers(1, n_items + 5))
    seed = draw(st.integers(0, 2**32 - 1))
    temperature = draw(st.sampled_from([1e-8, 1e-4, 0.1, 1.0, 1e4, 1e8]))
    kind = draw(st.sampled_from(["normal", "ties", "signed-zeros", "huge", "tiny"]))
    density = draw(st.sampled_from([0.0, 0.3, 1.0]))
    rng = np.random.default_rng(seed)
    if kind == "ties":
        users = rng.integers(-2, 3, size=(n_users, dim)).astype(np.float32)
        items = rng.integers(-2, 3, size=(n_items, dim)).astype(np.float32)
    elif kind == "signed-zeros":
        users = rng.choice(np.array([-0.0, 0.0, 1.0], dtype=np.float32), size=(n_users, dim))
        items = rng.choice(np.array([-0.0, 0.0, -1.0, 1.0], dtype=np.float32), size=(n_items, dim))
    else:
        scale = {"normal": 1.0, "huge": 1e17, "tiny": 1e-17}[kind]
        users = (rng.standard_normal((n_users, dim)) * scale).astype(np.float32)
        items = (rng.standard_normal((n_items, dim)) * scale).astype(np.float32)
    # Stay inside the engine's overflow guard (it refuses what could overflow; tested above).
    bound = dim * float(np.abs(users).max(initial=0)) * float(np.abs(items).max(initial=0))
    if bound / min(temperature, 1.0) > 1e36:
        temperature = max(temperature, bound / 1e36)
    full = rng.random((n_users, n_items)) < density
    exclude = sp.csr_matrix(full.astype(np.float32))
    return users, items, k, exclude, temperature, kind


def _hypothesis_case(backend, problem):
    users, items, k, exclude, temperature, kind = problem
    result = mf.topk(users, items, k, exclude=exclude, temperature=temperature, backend=backend)
    # Exact ids where the float32 scores are exact (small integers / zeros).
    assert_topk_matches(
        result, users, items, k, exclude=exclude, temperature=temperature, exact_ids=kind in ("ties", "signed-zeros")
    )
    _check_invariants(result, temperature)
    # Probabilities of the listed items never sum above 1 (beyond float rounding) where float64 can
    # resolve the normaliser's excess over the top term.
    resolvable = np.abs(result.scores[:, 0].astype(np.float64) / temperature) < 2.0**40
    total = result.probs.astype(np.float64).sum(axis=1)
    assert np.all(total[resolvable] <= 1 + 1e-5), total.max()
    # The probability of every listed item is the one probabilities() gives for its score.
    expected = probabilities(result.scores, result.log_normalizer, temperature).astype(np.float32)
    np.testing.assert_allclose(result.probs, expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("backend", CPU_PARAMS)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(problem=extreme_problems())
def test_extremes_property(backend, problem):
    _hypothesis_case(backend, problem)


@pytest.mark.parametrize("level", _native_levels())
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(problem=extreme_problems())
def test_extremes_property_every_simd_level(monkeypatch, level, problem):
    monkeypatch.setenv("MMREC_FAST_SIMD", level)
    _hypothesis_case("native", problem)


@pytest.mark.parametrize("backend", CPU_PARAMS)
@pytest.mark.parametrize("layout", ["read-only", "memmap", "non-contiguous", "fortran"])
def test_unusual_memory_layouts(backend, layout, rng, tmp_path):
    items = rng.normal(size=(80, 6)).astype(np.float32)
    users = rng.normal(size=(4, 6)).astype(np.float32)
    if layout == "read-only":
        items.flags.writeable = False
    elif layout == "memmap":
        mm = np.lib.format.open_memmap(tmp_path / "items.npy", mode="w+", dtype=np.float32, shape=items.shape)
        mm[:] = items
        items = np.load(tmp_path / "items.npy", mmap_mode="r")
    elif layout == "non-contiguous":
        items = np.repeat(items, 2, axis=1)[:, ::2]
    else:
        items = np.asfortranarray(items)
    result = mf.topk(users, items, 7, backend=backend, exclude=[[0, 1], [], list(range(80)), [5]])
    assert_topk_matches(result, users, np.ascontiguousarray(items), 7, exclude=[[0, 1], [], list(range(80)), [5]])
    assert np.all(result.indices[2] == -1) and np.isneginf(result.log_normalizer[2])
