"""Property tests (hypothesis): any shape, k, exclusion pattern, temperature and value scale."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import mmrec_fast as mf
from mmrec_fast.testing import BACKENDS, assert_topk_matches


@st.composite
def problems(draw):
    n_users = draw(st.integers(1, 40))
    n_items = draw(st.integers(1, 300))
    dim = draw(st.integers(1, 70))
    k = draw(st.integers(1, n_items + 20))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1e-6, 1e-2, 1.0, 30.0, 1e4]))
    temperature = draw(st.sampled_from([0.01, 0.3, 1.0, 10.0]))
    integer_valued = draw(st.booleans())  # exact scores: many exact ties
    density = draw(st.sampled_from([0.0, 0.05, 0.5, 0.95, 1.0]))
    blocks = draw(st.sampled_from([(None, None), (1, 1), (2, 3), (7, 64), (5, 257)]))
    rng = np.random.default_rng(seed)
    if integer_valued:
        users = rng.integers(-3, 4, size=(n_users, dim)).astype(np.float32)
        items = rng.integers(-3, 4, size=(n_items, dim)).astype(np.float32)
    else:
        users = (rng.standard_normal((n_users, dim)) * scale / np.sqrt(dim)).astype(np.float32)
        items = (rng.standard_normal((n_items, dim)) * scale).astype(np.float32)
    mask = rng.random((n_users, n_items)) < density
    indptr = np.concatenate([[0], np.cumsum(mask.sum(axis=1))])
    indices = np.nonzero(mask)[1]
    return users, items, k, (indptr, indices), temperature * max(scale**2, 1.0), blocks, integer_valued


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(problem=problems())
def test_topk_property(backend, problem):
    users, items, k, exclude, temperature, blocks, integer_valued = problem
    result = mf.topk(
        users,
        items,
        k,
        exclude=exclude,
        temperature=temperature,
        backend=backend,
        user_block=blocks[0],
        item_block=blocks[1],
    )
    assert_topk_matches(result, users, items, k, exclude=exclude, temperature=temperature, exact_ids=integer_valued)
