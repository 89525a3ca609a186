"""fuse(): normalised, weighted concatenation; exact per-modality score split; missing modalities; PCA."""

import numpy as np
import pytest

from mmrec_fast.encoders import FusedItems, ModalityBlock, fuse


@pytest.fixture
def blocks(rng):
    return {
        "text": rng.normal(size=(50, 8)).astype(np.float32) * 3,
        "image": rng.normal(size=(50, 12)).astype(np.float32),
        "audio": rng.normal(size=(50, 4)).astype(np.float32) * 0.1,
    }


def test_normalised_weighted_concatenation(blocks):
    f = fuse(blocks, {"text": 1.0, "image": 0.5, "audio": 2.0})
    assert isinstance(f, FusedItems) and f.matrix.shape == (50, 24) and f.matrix.dtype == np.float32
    assert f.columns == {"text": slice(0, 8), "image": slice(8, 20), "audio": slice(20, 24)}
    for name, w in f.weights.items():
        np.testing.assert_allclose(np.linalg.norm(f.matrix[:, f.columns[name]], axis=1), w, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(f.matrix, axis=1) ** 2, 1 + 0.25 + 4, rtol=1e-5)


def test_scores_split_exactly_into_modalities(blocks, rng):
    f = fuse(blocks, {"text": 1.0, "image": 0.7, "audio": 0.3})
    user = rng.normal(size=f.dim)
    parts = f.contributions(user)
    total = sum(parts.values())
    np.testing.assert_allclose(total, f.matrix.astype(np.float64) @ user, rtol=1e-5, atol=1e-5)
    sub = f.contributions(user, items=[3, 7])
    np.testing.assert_allclose(sub["image"], parts["image"][[3, 7]])
    with pytest.raises(ValueError, match="user"):
        f.contributions(user[:-1])


def test_missing_modalities_zero_mean_raise(blocks):
    b = dict(blocks)
    b["image"] = b["image"].copy()
    b["image"][[2, 5]] = 0.0  # the on_error="zero" output
    b["audio"] = b["audio"].copy()
    b["audio"][7] = np.nan  # NaN rows count as missing, never propagate
    present = np.ones(50, bool)
    present[9] = False
    b["text"] = (b["text"], present)  # explicit mask
    f = fuse(b)
    assert f.missing == {"text": 1, "image": 2, "audio": 1}
    assert np.isfinite(f.matrix).all()
    assert not f.present["image"][2] and f.present["image"][3]
    np.testing.assert_array_equal(f.matrix[[2, 5], 8:20], 0)  # "zero": contributes nothing
    np.testing.assert_array_equal(f.matrix[9, :8], 0)
    np.testing.assert_allclose(np.linalg.norm(f.matrix[3, 8:20]), 1.0, rtol=1e-5)

    m = fuse(b, missing="mean")
    fill = m.matrix[2, 8:20]
    np.testing.assert_allclose(m.matrix[5, 8:20], fill)
    np.testing.assert_allclose(np.linalg.norm(fill), 1.0, rtol=1e-5)  # a typical item, same norm
    mean_dir = f.matrix[f.present["image"], 8:20].mean(0)
    np.testing.assert_allclose(fill, mean_dir / np.linalg.norm(mean_dir), rtol=1e-4, atol=1e-6)

    with pytest.raises(ValueError, match=r"blocks\['text'\]: row 9 is missing"):
        fuse(b, missing="raise")
    # An item with no modality at all: an all-zero row (score 0), not a crash.
    allgone = {k: (v[0] if isinstance(v, tuple) else v).copy() for k, v in b.items()}
    for v in allgone.values():
        v[11] = 0
    assert np.abs(fuse(allgone).matrix[11]).sum() == 0


def test_modality_block_and_transform(blocks):
    mb = ModalityBlock(blocks["image"], np.arange(50) % 4 != 0)
    f = fuse({"text": blocks["text"], "image": mb}, missing="mean")
    assert f.missing["image"] == 13
    np.testing.assert_allclose(f.transform({"text": blocks["text"], "image": mb}), f.matrix, atol=1e-6)


def test_pca_projection_keeps_the_split_exact(blocks, rng):
    f = fuse(blocks, {"text": 1.0, "image": 1.0, "audio": 0.5}, target_dim=6)
    assert f.matrix.shape == (50, 6) and f.components.shape == (24, 6)
    # The projection is PCA: components orthonormal, variances in decreasing order.
    np.testing.assert_allclose(f.components.T @ f.components, np.eye(6), atol=1e-8)
    var = f.matrix.var(axis=0)
    assert (np.diff(var) <= 1e-6).all()
    user = rng.normal(size=6)
    parts = f.contributions(user)
    assert set(parts) == {"text", "image", "audio", "_centre"}
    np.testing.assert_allclose(sum(parts.values()), f.matrix.astype(np.float64) @ user, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(f.transform(blocks), f.matrix, atol=1e-5)
    # Against scikit-learn's PCA (up to sign), in float64 like ours: on the float32 matrix its SVD
    # carries ~1e-5 errors that depend on the random draw.
    sklearn = pytest.importorskip("sklearn.decomposition", reason="PCA reference needs scikit-learn")
    ref = sklearn.PCA(n_components=6, svd_solver="full").fit(f.concat.astype(np.float64))
    np.testing.assert_allclose(np.abs(ref.components_.T), np.abs(f.components), atol=1e-5)


def test_bad_arguments(blocks):
    with pytest.raises(ValueError, match="missing"):
        fuse(blocks, missing="drop")
    with pytest.raises(ValueError, match="weights"):
        fuse(blocks, {"text": 1.0})
    with pytest.raises(ValueError, match=r"weights\['image'\]"):
        fuse(blocks, {"text": 1.0, "image": -1.0, "audio": 1.0})
    with pytest.raises(ValueError, match="target_dim"):
        fuse(blocks, target_dim=24)
    with pytest.raises(ValueError, match="target_dim"):
        fuse({k: v[:3] for k, v in blocks.items()}, target_dim=5)
    with pytest.raises(ValueError, match=r"blocks\['audio'\]: has 10 rows"):
        fuse({"text": blocks["text"], "audio": blocks["audio"][:10]})
    bad = blocks["image"].copy()
    bad[4, 1] = np.inf
    with pytest.raises(ValueError, match=r"blocks\['image'\]: contains inf"):
        fuse({"image": bad})
    with pytest.raises(ValueError, match="blocks"):
        fuse({})
    with pytest.raises(ValueError, match="2-D"):
        fuse({"text": np.ones(5)})
