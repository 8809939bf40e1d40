"""Reading radiographs of any format: PNG / JPEG, grey or colour, 8 or 16 bit."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as stored (grey or colour, 8 or 16 bit); a file that cannot be decoded is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "is a folder; expected an image file" if path.is_dir() else "image file not found")
    # imdecode on bytes (not imread) so that non-ASCII paths work and truncation is detected the same way.
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise DataError(path, "cannot decode image (corrupt, truncated or not an image)")
    return image


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any decoded image -> 2-D uint8. 16-bit data is stretched by its own maximum, since X-ray detectors
    rarely fill all 16 bits and a plain >> 8 would leave the image nearly black."""
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code) if image.shape[2] in (3, 4) else image[..., 0]
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float32)
    top = float(image.max())
    if top <= 0:
        return np.zeros(image.shape, np.uint8)
    return np.round(image * (255.0 / top)).astype(np.uint8)


def read_gray(path: str | Path) -> np.ndarray:
    return to_gray_uint8(read_image(path))


def image_hw(image: np.ndarray) -> tuple[int, int]:
    return int(image.shape[0]), int(image.shape[1])


def read_hw(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image as stored, from its header where Pillow can read one (milliseconds for a 2048 PNG),
    else by decoding it."""
    try:
        from PIL import Image

        with Image.open(path) as im:  # reads the header only
            width, height = im.size
        return int(height), int(width)
    except Exception:  # no Pillow, or a file it cannot parse: the decoder decides (and names the problem)
        return image_hw(read_image(path))
