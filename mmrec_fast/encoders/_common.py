"""Small helpers shared by the encoders (model fingerprints, settings)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".onnx")


def model_fingerprint(path: Path) -> dict:
    """Identity of a local model for cache keys: config hash plus weight file names and sizes.

    Hashing multi-hundred-MB weights on every start would cost seconds; the config digest plus the
    exact byte size of every weight file changes whenever the weights are swapped in practice.
    """
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    config = hashlib.sha256()
    weights = {}
    for p in files:
        rel = p.name if path.is_file() else str(p.relative_to(path))
        if p.suffix in _WEIGHT_SUFFIXES:
            weights[rel] = p.stat().st_size
        elif p.suffix == ".json" and p.stat().st_size < 5_000_000:
            config.update(rel.encode())
            config.update(p.read_bytes())
    return {"config_sha256": config.hexdigest()[:32], "weights": weights}
