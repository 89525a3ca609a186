"""The (score, index) order key: one Python definition (mmrec_fast._keys), and the copies that must stay
(Numba's inlined key, torch's signed form) agree with it on signed zeros, ties and the extremes."""

import numpy as np
import pytest

from mmrec_fast import _keys

F32 = np.finfo(np.float32)
SCORES = np.array(
    [-np.inf, -F32.max, -1e30, -1.0, -F32.tiny, -1e-45, -0.0, 0.0, 1e-45, F32.tiny, 1.0, 1.0, 3e38, F32.max, np.inf],
    dtype=np.float32,
)


def _expected_order(scores, indices):
    """Contract order: score descending (as real numbers: -0 == +0), then index ascending; -inf last."""
    return sorted(range(len(scores)), key=lambda q: (-float(scores[q]), int(indices[q])))


def test_python_key_orders_by_the_contract():
    indices = np.arange(len(SCORES), dtype=np.int64)[::-1].copy()
    keys = _keys.encode(SCORES, indices)
    finite = ~np.isneginf(SCORES)
    got = [int(q) for q in np.argsort(keys)[::-1]]  # keys are unique: larger key = earlier
    order = [q for q in got if finite[q]]
    assert order == [q for q in _expected_order(SCORES, indices) if finite[q]]
    assert np.all(keys[~finite] == _keys.EMPTY_KEY) and np.all(keys[finite] > _keys.EMPTY_KEY)
    scores, back = _keys.decode(keys)
    np.testing.assert_array_equal(back[finite], indices[finite])
    np.testing.assert_array_equal(scores[finite], SCORES[finite] + np.float32(0.0))  # -0.0 decodes as +0.0


def test_signed_zeros_tie_on_the_index():
    keys = _keys.encode(np.array([-0.0, 0.0, -0.0], dtype=np.float32), np.array([7, 3, 5]))
    assert list(np.argsort(keys)[::-1]) == [1, 2, 0]  # ids 3, 5, 7


def test_numba_key_is_the_complement_of_the_python_key():
    numba_select = pytest.importorskip("mmrec_fast.backends.numba_select", reason="numba unavailable")
    rng = np.random.default_rng(0)
    indices = rng.integers(0, 2**32 - 1, size=SCORES.size)
    finite = ~np.isneginf(SCORES)
    ours = _keys.encode(SCORES, indices)
    for q in np.flatnonzero(finite):
        theirs = numba_select._make_key(SCORES[q], np.int64(indices[q]))
        assert int(theirs) == int(~ours[q]), (SCORES[q], indices[q])


def test_torch_key_is_the_python_key_with_the_top_bit_flipped():
    torch = pytest.importorskip("torch", reason="torch not installed")
    tile = np.stack([SCORES, SCORES[::-1].copy()])
    signed = _keys.encode_torch(torch.from_numpy(tile), 40).numpy()
    for row in range(2):
        ours = _keys.encode(tile[row], np.arange(40, 40 + tile.shape[1]))
        flipped = (ours ^ np.uint64(1 << 63)).view(np.int64)
        live = ~np.isneginf(tile[row])
        np.testing.assert_array_equal(signed[row][live], flipped[live])
        assert np.all(signed[row][~live] == _keys.TORCH_EMPTY_KEY)
    scores, indices = _keys.decode_torch(torch.from_numpy(signed))
    live = ~np.isneginf(tile)
    np.testing.assert_array_equal(scores.numpy()[live], tile[live] + np.float32(0.0))
    assert np.all(indices.numpy()[~live] == -1)
