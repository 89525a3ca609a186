"""Bad input raises ValueError naming the argument, on every backend, before any work is done."""

import numpy as np
import pytest
import scipy.sparse as sp

import mmrec_fast as mf
from mmrec_fast.testing import BACKENDS

U = np.ones((4, 3), dtype=np.float32)
V = np.ones((10, 3), dtype=np.float32)


def _with(arr, index, value):
    arr = arr.copy()
    arr[index] = value
    return arr


CASES = [  # (kwargs overriding a valid call, expected message fragment)
    (dict(users=_with(U, (1, 2), np.nan)), r"users: contains NaN"),
    (dict(users=_with(U, (0, 0), np.inf)), r"users: contains inf"),
    (dict(items=_with(V, (3, 1), -np.inf)), r"items: contains inf"),
    (dict(items=_with(V.astype(np.float64), (3, 1), 1e300)), r"items: values exceed the float32 range"),
    (dict(users=np.ones(3)), r"users: expected a 2-D array"),
    (dict(items=np.ones((2, 2, 2))), r"items: expected a 2-D array"),
    (dict(users=np.ones((4, 0))), r"users: embedding dimension"),
    (dict(users=np.ones((4, 5))), r"users: has 5 dimensions but items has 3"),
    (dict(users=np.array([["a", "b", "c"]])), r"users: expected a real numeric array"),
    (dict(users=U.astype(np.complex64)), r"users: expected a real numeric array"),
    (dict(k=0), r"k: must be >= 1"),
    (dict(k=-3), r"k: must be >= 1"),
    (dict(k=2.5), r"k: expected an integer"),
    (dict(k=True), r"k: expected an integer"),
    (dict(temperature=0.0), r"temperature: must be finite and > 0"),
    (dict(temperature=-1.0), r"temperature: must be finite and > 0"),
    (dict(temperature=np.nan), r"temperature: must be finite and > 0"),
    (dict(temperature=np.inf), r"temperature: must be finite and > 0"),
    (dict(temperature="hot"), r"temperature: expected a positive number"),
    (dict(temperature=1e-38), r"temperature: .* too small"),
    (dict(temperature=3e-39), r"temperature: .* too small \(log2\(e\) / temperature overflows float32\)"),
    (dict(users=U * 1e19, items=V * 1e19), r"users, items: scores could overflow float32"),
    (dict(exclude=sp.csr_matrix((4, 11))), r"exclude: sparse matrix has shape \(4, 11\)"),
    (dict(exclude=(np.array([0, 1, 1, 1, 1]), np.array([10]))), r"exclude: id 10 out of range \[0, 10\)"),
    (dict(exclude=(np.array([0, 1, 1, 1, 1]), np.array([-1]))), r"exclude: id -1 out of range"),
    (dict(exclude=(np.array([0, 1, 1]), np.array([2]))), r"exclude: indptr must be .* length U \+ 1 = 5"),
    (dict(exclude=(np.array([0, 2, 1, 1, 1]), np.array([2]))), r"exclude: indptr must start at 0, never"),
    (dict(exclude=(np.array([0, 0, 0, 0, 1]), np.array([1.5]))), r"exclude: expected integer ids"),
    (dict(exclude="all"), r"exclude: expected a scipy.sparse matrix"),
    (dict(user_block=0), r"user_block: expected a positive integer"),
    (dict(item_block=-5), r"item_block: expected a positive integer"),
    (dict(num_threads=0), r"num_threads: expected a positive integer"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CASES, ids=[c[1][:40] for c in CASES])
def test_topk_rejects(backend, case):
    overrides, message = case
    kwargs = dict(users=U, items=V, k=3, backend=backend)
    kwargs.update(overrides)
    with pytest.raises(ValueError, match=message):
        mf.topk(kwargs.pop("users"), kwargs.pop("items"), kwargs.pop("k"), **kwargs)


def test_unknown_and_unavailable_backend(monkeypatch):
    with pytest.raises(ValueError, match="backend: unknown backend 'gpu9000'"):
        mf.topk(U, V, 3, backend="gpu9000")
    with pytest.raises(ValueError, match="backend: expected a name"):
        mf.topk(U, V, 3, backend=3)
    monkeypatch.setenv("MMREC_FAST_BACKEND", "nope")
    with pytest.raises(ValueError, match="environment variable MMREC_FAST_BACKEND: unknown backend"):
        mf.topk(U, V, 3)


def test_environment_variable_overrides_auto(monkeypatch):
    monkeypatch.setenv("MMREC_FAST_BACKEND", "numpy")
    assert mf.ItemIndex(V).backend_name == "numpy"


def test_index_backend_conflict():
    index = mf.ItemIndex(V, backend="numpy")
    other = next((n for n, s in mf.available_backends().items() if s.available and n != "numpy"), None)
    if other is None:
        pytest.skip("only the numpy backend is available")
    with pytest.raises(ValueError, match="backend: .* ItemIndex prepared for 'numpy'"):
        mf.topk(U, index, 3, backend=other)


def test_inputs_not_modified():
    users, items = U.copy(), V.copy()
    mf.topk(users, items, 3, exclude=sp.csr_matrix(np.eye(4, 10)))
    np.testing.assert_array_equal(users, U)
    np.testing.assert_array_equal(items, V)


def test_score_pairs_rejects():
    with pytest.raises(ValueError, match=r"user_ids: id 4 out of range \[0, 4\)"):
        mf.score_pairs(U, V, [4], [0])
    with pytest.raises(ValueError, match=r"item_ids: id -2 out of range"):
        mf.score_pairs(U, V, [0], [-2])
    with pytest.raises(ValueError, match="user_ids, item_ids: lengths differ"):
        mf.score_pairs(U, V, [0, 1], [0])
    with pytest.raises(ValueError, match="user_ids: expected integer ids"):
        mf.score_pairs(U, V, [0.5], [0])


def test_score_size_guard():
    with pytest.raises(ValueError, match="max_elements: a dense 4 x 10 score matrix has 40 elements"):
        mf.score(U, V, max_elements=39)
