"""Image preprocessing: decode (EXIF orientation applied), RGB or grayscale, resize, center-crop, normalise.

Decoding is Pillow's (JPEG, PNG, WebP, GIF, BMP, TIFF ...); :func:`load_image` forces the full
decode so a truncated or corrupt file fails here, with Pillow's message, and not later inside a
batch. Geometry follows the usual ImageNet evaluation recipe that timm and transformers use:
resize the shorter side to ``resize`` (= ``size / crop_pct``), center-crop ``size`` x ``size``,
scale to [0, 1], subtract ``mean``, divide by ``std``.
"""

from __future__ import annotations

import io
import os
from dataclasses import asdict, dataclass

import numpy as np

from .._optional import require
from ._source import file_bytes

__all__ = ["ImagePreprocessor", "load_image", "image_content_bytes"]

_RESAMPLE = ("nearest", "bilinear", "bicubic", "lanczos")


def load_image(source):
    """Decode an image into a Pillow image with its EXIF orientation applied.

    Parameters
    ----------
    source : str, os.PathLike, bytes, file-like, PIL.Image.Image or np.ndarray
        A path, encoded bytes, an open binary file, an already decoded image, or an array
        (H x W grayscale or H x W x 3/4, uint8 in 0..255 or float in 0..1).

    Raises
    ------
    FileNotFoundError
        The path does not exist.
    PIL.UnidentifiedImageError
        The data is not an image format Pillow knows (unsupported format, or not an image at all).
    OSError
        The file is truncated or corrupt (raised by the full decode).
    TypeError, ValueError
        ``source`` is of an unsupported type, or an array of the wrong shape/dtype/range.
    """
    Image = require("PIL.Image", extra="encoders", feature="image loading")
    ImageOps = require("PIL.ImageOps", extra="encoders", feature="image loading")

    if isinstance(source, Image.Image):
        img = source
    elif isinstance(source, np.ndarray):
        arr = source
        if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or arr.size == 0:
            raise ValueError(f"image array: expected H x W or H x W x 1/3/4, got shape {arr.shape}")
        if arr.dtype.kind == "f":
            if not np.isfinite(arr).all() or arr.min() < 0 or arr.max() > 1:
                raise ValueError("image array: float images must be finite and within [0, 1]")
            arr = (arr * 255 + 0.5).astype(np.uint8)
        elif arr.dtype != np.uint8:
            raise ValueError(f"image array: expected uint8 or float in [0, 1], got dtype {arr.dtype}")
        if arr.ndim == 3 and arr.shape[2] == 1:
            arr = arr[:, :, 0]
        return Image.fromarray(np.ascontiguousarray(arr))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        img = Image.open(io.BytesIO(bytes(source)))
    elif isinstance(source, (str, os.PathLike)):
        if not os.path.exists(source):
            raise FileNotFoundError(f"no such image file: {os.fspath(source)!r}")
        img = Image.open(source)
    elif hasattr(source, "read"):
        img = Image.open(source)
    else:
        raise TypeError(f"expected a path, bytes, file object, PIL image or array, got {type(source).__name__}")
    img.load()  # full decode now: truncated/corrupt data raises OSError here
    # Phone photos store rotation as an EXIF tag; without this a portrait shot is encoded sideways.
    return ImageOps.exif_transpose(img)


def image_content_bytes(source) -> bytes:
    """Bytes identifying an image's content, for the embedding cache (a file is read, not decoded)."""
    Image = require("PIL.Image", extra="encoders", feature="image loading")

    data = file_bytes(source, "image")
    if data is not None:
        return data
    if isinstance(source, np.ndarray):
        return f"array:{source.dtype}:{source.shape}:".encode() + np.ascontiguousarray(source).tobytes()
    if isinstance(source, Image.Image):
        return f"pil:{source.mode}:{source.size}:".encode() + source.tobytes()
    raise TypeError(f"expected a path, bytes, PIL image or array, got {type(source).__name__}")


@dataclass(frozen=True)
class ImagePreprocessor:
    """Turn an image into a normalised float32 ``3 x size x size`` model input.

    Parameters
    ----------
    size : int
        Side of the square crop fed to the model.
    resize : int, optional
        The shorter side is resized to this before the crop; default ``round(size / 0.875)``
        (the ImageNet evaluation ratio). ``resize == size`` crops the largest central square.
    mode : {"RGB", "L"}
        ``"L"`` converts to grayscale first (three identical channels are fed to RGB models), for
        catalogues where colour should not matter.
    mean, std : tuple of 3 floats
        Per-channel normalisation after scaling to [0, 1].
    interpolation : {"bicubic", "bilinear", "nearest", "lanczos"}
        Resampling filter.
    center_crop : bool
        False resizes straight to ``size`` x ``size`` (aspect ratio not kept) instead of cropping.
    """

    size: int = 224
    resize: int | None = None
    mode: str = "RGB"
    mean: tuple = (0.5, 0.5, 0.5)
    std: tuple = (0.5, 0.5, 0.5)
    interpolation: str = "bicubic"
    center_crop: bool = True

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size: must be a positive integer, got {self.size!r}")
        if self.resize is not None and (not isinstance(self.resize, int) or self.resize < self.size):
            raise ValueError(f"resize: must be an integer >= size ({self.size}), got {self.resize!r}")
        if self.mode not in ("RGB", "L"):
            raise ValueError(f"mode: must be 'RGB' or 'L', got {self.mode!r}")
        if self.interpolation not in _RESAMPLE:
            raise ValueError(f"interpolation: must be one of {_RESAMPLE}, got {self.interpolation!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or (name == "std" and min(value) <= 0):
                raise ValueError(f"{name}: expected 3 values{' > 0' if name == 'std' else ''}, got {value!r}")
            object.__setattr__(self, name, value)

    @property
    def resize_to(self) -> int:
        """Shorter-side length before the crop."""
        return self.resize if self.resize is not None else int(round(self.size / 0.875))

    def settings(self) -> dict:
        """The settings as a plain dictionary (for cache keys)."""
        return asdict(self)

    def to_pil(self, source):
        """Decode, orient, convert colour mode, resize and crop; returns a Pillow image."""
        Image = require("PIL.Image", extra="encoders", feature="image preprocessing")

        img = load_image(source)
        # Palette/alpha images: composite on white so transparent areas do not turn black.
        if img.mode in ("RGBA", "LA", "P", "PA"):
            rgba = img.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            img = Image.alpha_composite(background, rgba)
        img = img.convert(self.mode)
        resample = getattr(Image.Resampling, self.interpolation.upper())
        w, h = img.size
        if not self.center_crop:
            return img.resize((self.size, self.size), resample)
        scale = self.resize_to / min(w, h)
        nw, nh = max(self.size, round(w * scale)), max(self.size, round(h * scale))
        img = img.resize((nw, nh), resample)
        left, top = (nw - self.size) // 2, (nh - self.size) // 2
        return img.crop((left, top, left + self.size, top + self.size))

    def __call__(self, source) -> np.ndarray:
        """Preprocess one image into float32 ``(3, size, size)``."""
        img = self.to_pil(source)
        arr = np.asarray(img, dtype=np.float32) * np.float32(1 / 255)
        if arr.ndim == 2:  # grayscale: the same plane in all three channels
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        arr = (arr - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(arr.transpose(2, 0, 1))
