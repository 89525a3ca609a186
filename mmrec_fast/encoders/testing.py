"""Tiny randomly initialised transformers models written to a local folder.

They exercise the generic loading code of the encoders (``from_pretrained`` on a local directory,
tokenizer / image processor / feature extractor files) without any download: useful for tests here
and for users checking an offline setup. The weights are random, so the outputs mean nothing.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "make_tiny_text_model",
    "make_tiny_vision_model",
    "make_tiny_audio_model",
    "make_tiny_clip_model",
    "write_sample_photos",
    "speak",
    "write_corrupt_files",
]

_WORDS = [
    "the",
    "a",
    "an",
    "and",
    "of",
    "to",
    "in",
    "is",
    "red",
    "blue",
    "green",
    "wool",
    "sweater",
    "jeans",
    "cotton",
    "shirt",
    "song",
    "music",
    "guitar",
    "piano",
    "movie",
    "film",
    "comedy",
    "drama",
    "cat",
    "dog",
    "flower",
    "daisy",
    "photo",
    "image",
    "sound",
    "speech",
    "hello",
    "world",
]


def _seeded():
    import torch

    torch.manual_seed(0)


def make_tiny_text_model(path, *, hidden_size: int = 32, layers: int = 2) -> Path:
    """Write a tiny random BERT (word-piece tokenizer over a small vocabulary) to ``path``."""
    from transformers import BertConfig, BertModel, BertTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(_WORDS) + list("abcdefghijklmnopqrstuvwxyz")
    vocab += ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizer(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    tokenizer.save_pretrained(str(path))
    _seeded()
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=64,
    )
    BertModel(config).eval().save_pretrained(str(path))
    return path


def make_tiny_vision_model(path, *, image_size: int = 32, hidden_size: int = 32) -> Path:
    """Write a tiny random ViT (with its image processor config) to ``path``."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seeded()
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
    )
    ViTModel(config).eval().save_pretrained(str(path))
    ViTImageProcessor(
        size={"height": image_size, "width": image_size}, image_mean=[0.5] * 3, image_std=[0.5] * 3
    ).save_pretrained(str(path))
    return path


def make_tiny_clip_model(path, *, image_size: int = 32) -> Path:
    """Write a tiny random CLIP (vision + text towers, projection 16-d, image processor) to ``path``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seeded()
    config = CLIPConfig(
        text_config=dict(
            vocab_size=99,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=32,
        ),
        vision_config=dict(
            image_size=image_size,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
        ),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(str(path))
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}, do_center_crop=True
    ).save_pretrained(str(path))
    return path


def make_tiny_audio_model(path, *, hidden_size: int = 32) -> Path:
    """Write a tiny random Wav2Vec2 encoder (with its feature extractor config) to ``path``."""
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _seeded()
    config = Wav2Vec2Config(
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden_size,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 4),
        conv_kernel=(10, 4, 4),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
        do_stable_layer_norm=True,
        feat_extract_norm="layer",
    )
    Wav2Vec2Model(config).eval().save_pretrained(str(path))
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16000, padding_value=0.0, do_normalize=True, return_attention_mask=True
    ).save_pretrained(str(path))
    return path


def write_sample_photos(folder) -> dict:
    """Write scikit-learn's two real photographs (``china.jpg``, ``flower.jpg``) as JPEG files.

    Returns ``{"china": path, "flower": path}``. scikit-learn ships them inside its wheel.
    """
    from PIL import Image
    from sklearn.datasets import load_sample_image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name in ("china", "flower"):
        path = folder / f"{name}.jpg"
        Image.fromarray(load_sample_image(f"{name}.jpg")).save(path, quality=92)
        out[name] = path
    return out


def speak(text: str, path, *, voice: str = "en-us", speed: int = 140) -> Path | None:
    """Synthesise ``text`` to a WAV file with Debian's ``espeak-ng``; ``None`` when it is not installed."""
    import shutil
    import subprocess

    exe = shutil.which("espeak-ng")
    if exe is None:
        return None
    path = Path(path)
    subprocess.run(
        [exe, "-v", voice, "-s", str(speed), "-w", str(path), text],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return path


def write_corrupt_files(folder, valid_jpeg=None, valid_wav=None) -> dict:
    """Bad inputs for error-policy tests: truncated JPEG/WAV, text posing as media, unsupported format.

    Returns a name -> path mapping (``"missing"`` names a path that does not exist).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {
        "garbage_jpg": folder / "garbage.jpg",
        "garbage_wav": folder / "garbage.wav",
        "unsupported": folder / "vector.svg",
        "missing": folder / "does_not_exist.png",
        "empty": folder / "empty.jpg",
    }
    out["garbage_jpg"].write_bytes(b"this is not a JPEG file at all" * 10)
    out["garbage_wav"].write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    out["unsupported"].write_text('<svg xmlns="http://www.w3.org/2000/svg"><circle r="4"/></svg>')
    out["empty"].write_bytes(b"")
    if valid_jpeg is not None:
        data = Path(valid_jpeg).read_bytes()
        out["truncated_jpg"] = folder / "truncated.jpg"
        out["truncated_jpg"].write_bytes(data[: len(data) // 3])
    if valid_wav is not None:
        data = Path(valid_wav).read_bytes()
        out["truncated_wav"] = folder / "truncated.wav"
        out["truncated_wav"].write_bytes(data[:30])
    return out
