"""Image preprocessing on real photographs (scikit-learn's china.jpg / flower.jpg)."""

import io

import numpy as np
import pytest

PIL = pytest.importorskip("PIL", reason="image preprocessing needs Pillow")
from PIL import Image  # noqa: E402

from mmrec_fast.preprocess.image import ImagePreprocessor, image_content_bytes, load_image  # noqa: E402


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    pytest.importorskip("sklearn", reason="the fixture photographs ship with scikit-learn")
    from mmrec_fast.encoders.testing import write_sample_photos

    return write_sample_photos(tmp_path_factory.mktemp("photos"))


def test_shapes_normalisation_and_sources(photos):
    pre = ImagePreprocessor()
    x = pre(photos["flower"])
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert x.min() >= -1.0 and x.max() <= 1.0  # mean = std = 0.5 maps [0, 1] to [-1, 1]
    # Path, bytes, file object, PIL image and array give the same input.
    data = photos["flower"].read_bytes()
    img = Image.open(photos["flower"])
    for source in (data, io.BytesIO(data), img, np.asarray(img)):
        np.testing.assert_array_equal(pre(source), x)


def test_resize_and_center_crop_geometry():
    # A 400 x 200 image with a red left half and a blue right half: the central crop of the
    # 256-high resize keeps both halves split down the middle.
    arr = np.zeros((200, 400, 3), np.uint8)
    arr[:, :200, 0] = 255
    arr[:, 200:, 2] = 255
    pre = ImagePreprocessor(size=64, resize=64, mean=(0, 0, 0), std=(1, 1, 1), interpolation="nearest")
    x = pre(arr)
    assert x.shape == (3, 64, 64)
    assert x[0, :, :31].min() == 1.0 and x[2, :, 33:].min() == 1.0
    stretched = ImagePreprocessor(size=64, center_crop=False, mean=(0, 0, 0), std=(1, 1, 1))(arr)
    assert stretched.shape == (3, 64, 64) and stretched[0, :, :30].mean() > 0.99


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)  # landscape, stored with "rotate 90" in EXIF
    arr[:, :40] = 255
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW on display
    path = tmp_path / "rotated.jpg"
    img.save(path, exif=exif)
    shown = load_image(path)
    assert shown.size == (40, 80)  # portrait after orientation, as a viewer shows it


def test_grayscale_and_alpha(photos):
    gray = ImagePreprocessor(mode="L")(photos["china"])
    assert gray.shape == (3, 224, 224)
    np.testing.assert_array_equal(gray[0], gray[1])
    rgba = np.zeros((10, 10, 4), np.uint8)  # fully transparent: composited on white
    x = ImagePreprocessor(size=8, resize=8, mean=(0, 0, 0), std=(1, 1, 1))(rgba)
    assert x.min() == 1.0


def test_bad_inputs(tmp_path, photos):
    from mmrec_fast.encoders.testing import write_corrupt_files

    bad = write_corrupt_files(tmp_path, valid_jpeg=photos["flower"])
    with pytest.raises(FileNotFoundError, match="does_not_exist"):
        load_image(bad["missing"])
    for key in ("garbage_jpg", "unsupported", "empty"):
        with pytest.raises(PIL.UnidentifiedImageError):
            load_image(bad[key])
    with pytest.raises(OSError, match="truncated"):
        load_image(bad["truncated_jpg"])
    with pytest.raises(TypeError):
        load_image(3.5)
    with pytest.raises(ValueError, match="float images"):
        load_image(np.full((4, 4), 2.0))
    for kwargs, arg in [
        ({"size": 0}, "size"),
        ({"mode": "CMYK"}, "mode"),
        ({"std": (1, 0, 1)}, "std"),
        ({"resize": 100}, "resize"),
        ({"interpolation": "box"}, "interpolation"),
    ]:
        with pytest.raises(ValueError, match=arg):
            ImagePreprocessor(**kwargs)


def test_content_bytes_identify_content(photos, tmp_path):
    copy = tmp_path / "renamed.jpg"
    copy.write_bytes(photos["flower"].read_bytes())
    assert image_content_bytes(copy) == image_content_bytes(photos["flower"])
    assert image_content_bytes(photos["china"]) != image_content_bytes(photos["flower"])
