"""Every SIMD path of the native kernel (AVX-512, AVX2, portable) against the reference and each other."""

import numpy as np
import pytest

import mmrec_fast as mf
from testing import assert_topk_matches, random_exclusion, random_problem

native = pytest.importorskip("mmrec_fast._native", reason="native extension not built")
LEVELS = native.supported_simd_levels()


@pytest.mark.parametrize("level", ["avx512", "avx2", "scalar"])
@pytest.mark.parametrize("shape", [(13, 97, 5, 7), (40, 600, 64, 30), (9, 300, 130, 300)],
                         ids=lambda s: "U{}-I{}-d{}-k{}".format(*s))
def test_simd_level_matches_reference(monkeypatch, level, shape, rng):
    if level not in LEVELS:
        pytest.skip(f"{level} not supported by this CPU (supported: {LEVELS})")
    monkeypatch.setenv("MMREC_FAST_SIMD", level)
    n_users, n_items, dim, k = shape
    users, items = random_problem(rng, n_users, n_items, dim)
    exclude = random_exclusion(rng, n_users, n_items, 0.1, full_rows=[1])
    for blocks in [(None, None), (3, 5)]:
        result = mf.topk(users, items, k, exclude=exclude, backend="native",
                         user_block=blocks[0], item_block=blocks[1])
        assert native.simd_level() == level
        assert_topk_matches(result, users, items, k, exclude=exclude)


def test_simd_levels_bitwise_identical(monkeypatch, rng):
    users, items = random_problem(rng, 50, 2000, 48)
    outputs = []
    for level in LEVELS:
        monkeypatch.setenv("MMREC_FAST_SIMD", level)
        outputs.append(mf.topk(users, items, 20, backend="native"))
    for other in outputs[1:]:
        np.testing.assert_array_equal(other.indices, outputs[0].indices)
        np.testing.assert_array_equal(other.scores, outputs[0].scores)
        np.testing.assert_array_equal(other.log_normalizer, outputs[0].log_normalizer)


def test_bad_simd_override(monkeypatch):
    monkeypatch.setenv("MMREC_FAST_SIMD", "avx9000")
    with pytest.raises(ValueError, match="MMREC_FAST_SIMD"):
        mf.topk(np.ones((2, 2)), np.ones((3, 2)), 1, backend="native")
