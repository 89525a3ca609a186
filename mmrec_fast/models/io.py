"""Save a model to a directory (safetensors weights + JSON metadata + id maps) and load it back exactly."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .base import Recommender, ScoreBlock
from .config import TrainConfig
from .content import ContentProfile
from .factor import BPRMF, FactorModel, HybridMF

__all__ = ["SavedModel", "save_model", "load_model"]

FORMAT_VERSION = 1
_WEIGHTS, _META, _USERS, _ITEMS = "weights.safetensors", "model.json", "user_map.json", "item_map.json"


@dataclass
class SavedModel:
    """A loaded model with the id maps it was trained with (None if none were saved)."""

    model: Recommender
    user_map: object | None
    item_map: object | None
    metadata: dict


def _tensors_of(model: Recommender) -> dict[str, torch.Tensor]:
    if isinstance(model, FactorModel):
        return model.state_tensors()
    if isinstance(model, ContentProfile):
        return {"features": torch.from_numpy(model.features.copy()),
                "users": torch.from_numpy(model.user_vectors().copy())}
    raise ValueError(f"model: cannot save a {type(model).__name__}")


def save_model(model: Recommender, directory, *, user_map=None, item_map=None, metadata: dict | None = None) -> Path:
    """Write ``model`` to ``directory`` (created or replaced as a whole).

    Layout: ``weights.safetensors`` (every tensor, float32, bit-exact), ``model.json`` (kind, sizes,
    training config, score blocks, training history, caller metadata), and ``user_map.json`` /
    ``item_map.json`` (:class:`mmrec_fast.data.IdMap`) when given. The files are written into a
    temporary sibling directory that is renamed into place, so a crash never leaves a half-written model.

    Returns
    -------
    pathlib.Path
        The model directory.
    """
    from safetensors.torch import save_file

    target = Path(directory)
    for name, mapping, size in (("user_map", user_map, model.n_users), ("item_map", item_map, model.n_items)):
        if mapping is not None and len(mapping) != size:
            raise ValueError(f"{name} has {len(mapping)} ids, the model has {size}")
    meta = {
        "format": FORMAT_VERSION,
        "kind": model.kind,
        "n_users": model.n_users,
        "n_items": model.n_items,
        "blocks": [[b.name, b.start, b.stop] for b in model.blocks()],
        "history": getattr(model, "history", []),
        "metadata": metadata or {},
    }
    if isinstance(model, FactorModel):
        meta["config"] = model.config.to_dict()
        meta["feature_blocks"] = [[b.name, b.start, b.stop] for b in model.feature_blocks]
    if isinstance(model, ContentProfile):
        meta["feature_blocks"] = [[b.name, b.start, b.stop] for b in model.feature_blocks]
        meta["use_values"] = model.use_values
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_file(_tensors_of(model), str(staging / _WEIGHTS))
        (staging / _META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
        if user_map is not None:
            user_map.save(staging / _USERS)
        if item_map is not None:
            item_map.save(staging / _ITEMS)
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old)
        else:
            os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def load_model(directory, *, device: str | None = None) -> SavedModel:
    """Load what :func:`save_model` wrote; the vectors are bit-identical to the saved model's.

    Parameters
    ----------
    directory : path
        A directory written by :func:`save_model`.
    device : str, optional
        Override the saved training device (e.g. ``"cpu"`` to serve a GPU-trained model).
    """
    from safetensors.torch import load_file

    from ..data import IdMap

    path = Path(directory)
    if not (path / _META).is_file() or not (path / _WEIGHTS).is_file():
        raise ValueError(f"directory {str(path)!r} is not a saved model (needs {_META} and {_WEIGHTS})")
    meta = json.loads((path / _META).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path / _META}: unsupported format {meta.get('format')!r} (expected {FORMAT_VERSION})")
    tensors = load_file(str(path / _WEIGHTS))
    kind = meta["kind"]
    blocks = [ScoreBlock(*b) for b in meta.get("feature_blocks", [])]
    if kind in ("bpr", "hybrid"):
        config = TrainConfig.from_dict({**meta["config"], **({"device": device} if device else {})})
        if kind == "bpr":
            model = BPRMF(meta["n_users"], meta["n_items"], config)
        else:
            model = HybridMF(meta["n_users"], meta["n_items"], tensors["features"].numpy(), config,
                             feature_blocks=blocks)
        model.load_state_tensors(tensors)
    elif kind == "content":
        model = ContentProfile(tensors["features"].numpy(), feature_blocks=blocks, use_values=meta["use_values"])
        model._users = np.ascontiguousarray(tensors["users"].numpy())
    else:
        raise ValueError(f"{path / _META}: unknown model kind {kind!r}")
    model.history = meta.get("history", [])
    user_map = IdMap.load(path / _USERS) if (path / _USERS).is_file() else None
    item_map = IdMap.load(path / _ITEMS) if (path / _ITEMS).is_file() else None
    return SavedModel(model, user_map, item_map, meta.get("metadata", {}))
