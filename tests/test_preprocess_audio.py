"""Audio preprocessing: decoding (WAV/FLAC/OGG), mono, resampling, spectral gating, trimming."""

import numpy as np
import pytest

sf = pytest.importorskip("soundfile", reason="audio preprocessing needs soundfile")

from mmrec_fast.preprocess.audio import AudioPreprocessor, denoise, load_audio, resample, to_mono, trim_silence  # noqa: E402

SR = 16000


def tone(freq=440.0, seconds=1.0, sr=SR, amp=0.5):
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt", ["WAV", "FLAC", "OGG"])
def test_decode_formats_stereo_to_mono_and_resample(tmp_path, fmt):
    stereo = np.stack([tone(440, sr=22050), tone(440, sr=22050)], axis=1)
    path = tmp_path / f"clip.{fmt.lower()}"
    sf.write(path, stereo, 22050, format=fmt)
    data, sr = load_audio(path)
    assert sr == 22050 and data.shape[1] == 2
    y = AudioPreprocessor(trim=False)(path)
    assert abs(len(y) - SR) <= 2  # 1 s at 16 kHz
    # The tone survives resampling: its spectrum peaks at 440 Hz.
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * SR / len(y) - 440) < 3
    assert np.abs(to_mono(stereo) - stereo[:, 0]).max() < 1e-6


def test_resample_antialiasing():
    # A 7 kHz tone is above the 4 kHz Nyquist limit of 8 kHz audio: it must be filtered out,
    # not folded back as a 1 kHz alias.
    y = resample(tone(7000, sr=SR), SR, 8000)
    assert len(y) == 8000 and np.abs(y).max() < 0.05


def test_trim_silence_keeps_the_sound():
    y = np.concatenate([np.zeros(SR), tone(seconds=0.5), np.zeros(SR)]).astype(np.float32)
    out = trim_silence(y, SR, top_db=40, pad_ms=50)
    assert 0.5 * SR <= len(out) <= 0.65 * SR
    assert trim_silence(np.zeros(SR, np.float32), SR).size == 0
    with pytest.raises(ValueError, match="top_db"):
        trim_silence(y, SR, top_db=0)


def test_spectral_gating_reduces_stationary_noise():
    pytest.importorskip("noisereduce", reason="spectral gating uses noisereduce")
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    voiced = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 27))  # a 150-Hz "voice", 26 harmonics
    voiced = 0.3 * voiced / np.abs(voiced).max()
    clean = np.concatenate([np.zeros(SR // 2), voiced, np.zeros(SR // 2)]).astype(np.float32)
    noise = (0.02 * rng.standard_normal(len(clean))).astype(np.float32)
    out = denoise(clean + noise, SR)
    quiet = slice(0, SR // 2 - 1000)  # a noise-only stretch
    assert np.std(out[quiet]) < 0.5 * np.std(noise[quiet])
    loud = slice(SR // 2 + 2000, SR + SR // 2 - 2000)  # the voice keeps its energy
    assert np.std(out[loud]) > 0.8 * np.std(clean[loud])
    # An explicit noise sample gives the same behaviour.
    out2 = denoise(clean + noise, SR, noise_clip=noise[: SR // 4])
    assert np.std(out2[quiet]) < 0.5 * np.std(noise[quiet]) and np.std(out2[loud]) > 0.8 * np.std(clean[loud])
    with pytest.raises(ValueError, match="prop_decrease"):
        denoise(clean, SR, prop_decrease=2.0)


def test_array_inputs_and_bad_inputs(tmp_path):
    y = AudioPreprocessor()((tone(seconds=0.5, sr=8000), 8000))
    assert abs(len(y) - SR // 2) < 400
    pcm = (tone() * 32767).astype(np.int16)
    data, _ = load_audio((pcm, SR))
    assert data.dtype == np.float32 and np.abs(data).max() <= 1.0
    with pytest.raises(ValueError, match="sample rate"):
        load_audio(tone())
    with pytest.raises(ValueError, match="NaN"):
        load_audio((np.full(10, np.nan), SR))
    with pytest.raises(ValueError, match="silent audio"):
        AudioPreprocessor()((np.zeros(SR, np.float32), SR))
    with pytest.raises(FileNotFoundError):
        load_audio(tmp_path / "nope.wav")
    (tmp_path / "bad.wav").write_bytes(b"RIFF....WAVEjunk")
    with pytest.raises(sf.LibsndfileError):
        load_audio(tmp_path / "bad.wav")
    with pytest.raises(ValueError, match="sample_rate"):
        AudioPreprocessor(sample_rate=0)
