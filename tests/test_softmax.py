"""softmax / log_softmax / logsumexp: stable at any magnitude, -inf rows handled, checked against SciPy."""

import numpy as np
import pytest
import scipy.special

import mmrec_fast as mf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("scale", [1.0, 100.0, 1e4])
@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0])
def test_against_scipy(dtype, scale, temperature, rng):
    x = (rng.standard_normal((7, 50)) * scale).astype(dtype)
    x[2, :10] = -np.inf
    ref = x.astype(np.float64) / temperature
    tol = dict(rtol=2e-6 if dtype == np.float32 else 1e-12, atol=1e-30)
    np.testing.assert_allclose(mf.logsumexp(x, temperature=temperature), scipy.special.logsumexp(ref, axis=-1), **tol)
    np.testing.assert_allclose(
        mf.softmax(x, temperature=temperature),
        scipy.special.softmax(ref, axis=-1),
        rtol=tol["rtol"] * 10 * scale,
        atol=1e-7,
    )
    finite = np.isfinite(x)
    np.testing.assert_allclose(
        mf.log_softmax(x, temperature=temperature)[finite],
        scipy.special.log_softmax(ref, axis=-1)[finite],
        rtol=1e-5 if dtype == np.float32 else 1e-10,
        atol=1e-4 * scale,
    )
    assert mf.softmax(x).dtype == dtype


def test_large_scores_do_not_overflow():
    x = np.array([[1000.0, 1000.0, 999.0], [-1000.0, -1001.0, -1002.0]])
    p = mf.softmax(x)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    with np.errstate(over="ignore", invalid="ignore"):
        naive = np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)
    assert np.isnan(naive[0]).all()  # the textbook formula fails where ours does not


def test_all_neg_inf_rows():
    x = np.array([[-np.inf, -np.inf], [0.0, -np.inf]])
    np.testing.assert_array_equal(mf.logsumexp(x), [-np.inf, 0.0])
    np.testing.assert_array_equal(mf.softmax(x), [[0, 0], [1, 0]])
    np.testing.assert_array_equal(mf.log_softmax(x), [[-np.inf, -np.inf], [0, -np.inf]])
    assert mf.logsumexp(np.zeros((3, 0))).tolist() == [-np.inf] * 3


def test_axis_and_keepdims(rng):
    x = rng.standard_normal((4, 5, 6))
    np.testing.assert_allclose(mf.logsumexp(x, axis=1), scipy.special.logsumexp(x, axis=1))
    assert mf.logsumexp(x, axis=0, keepdims=True).shape == (1, 5, 6)
    np.testing.assert_allclose(mf.softmax(x, axis=0).sum(axis=0), 1.0)


@pytest.mark.parametrize("func", [mf.softmax, mf.log_softmax, mf.logsumexp])
def test_rejects_bad_input(func):
    with pytest.raises(ValueError, match="scores: contains NaN"):
        func(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match=r"scores: contains \+inf"):
        func(np.array([1.0, np.inf]))
    with pytest.raises(ValueError, match="temperature: must be finite and > 0"):
        func(np.array([1.0]), temperature=0)
    with pytest.raises(ValueError, match="axis: 3 out of range"):
        func(np.ones((2, 2)), axis=3)
    with pytest.raises(ValueError, match="scores: expected a real numeric array"):
        func(np.array(["a"]))


def test_topk_probs_match_dense_softmax(rng):
    users, items = rng.standard_normal((9, 6)) * 3, rng.standard_normal((400, 6)) * 3
    dense = mf.softmax(users @ items.T, temperature=2.0)
    result = mf.topk(users, items, 400, temperature=2.0)
    expected = np.take_along_axis(dense, result.indices, axis=1)
    np.testing.assert_allclose(result.probs, expected, rtol=1e-4, atol=1e-9)
