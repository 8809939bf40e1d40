"""Reading radiographs of any format: PNG / JPEG, grey or colour, 8 or 16 bit."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from plumbing.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")

# An EXIF orientation tag asks viewers to rotate or mirror the stored pixels. This tool reads every image as
# stored and ignores the tag (the masks, the submission and the metric use the stored size, as the competition's
# untagged PNGs have it); a tagged image is reported, since an annotation tool may have shown it turned.
EXIF_ORIENTATION_TAG = 0x0112
AS_STORED = 1  # the tag's value for "no rotation"
_EXIF_MARKERS = (b"Exif\x00\x00", b"eXIf")  # JPEG APP1 / PNG chunk: only files holding one are parsed


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image as stored (grey or colour, 8 or 16 bit); a file that cannot be decoded is a DataError."""
    return read_image_oriented(path)[0]


def _orientation(data: np.ndarray) -> int:
    raw = data.tobytes()
    if not any(m in raw for m in _EXIF_MARKERS) and not raw.startswith((b"II*\x00", b"MM\x00*")):  # TIFF: tags
        return AS_STORED
    try:
        import io

        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            value = im.getexif().get(EXIF_ORIENTATION_TAG, AS_STORED)
    except Exception:  # noqa: BLE001  (Pillow raises many kinds; a tag it cannot read is no tag: cv2 decodes)
        return AS_STORED
    return value if isinstance(value, int) and 1 <= value <= 8 else AS_STORED


def read_image_oriented(path: str | Path) -> tuple[np.ndarray, int]:
    """read_image, and the file's EXIF orientation tag (AS_STORED when it has none); the pixels are as stored."""
    path = Path(path)
    if not path.is_file():
        if is_broken_link(path):
            raise DataError(path, f"broken symbolic link (its target {os.readlink(path)} does not exist)")
        raise DataError(path, "is a folder; expected an image file" if path.is_dir() else "image file not found")
    # imdecode on bytes (not imread) so that non-ASCII paths work and truncation is detected the same way;
    # IMREAD_UNCHANGED also leaves the pixels as stored whatever their EXIF orientation (imread would turn them).
    data = np.fromfile(path, np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise DataError(path, "cannot decode image (corrupt, truncated or not an image)")
    return image, _orientation(data)


def is_broken_link(path: Path) -> bool:
    """A symbolic link whose target is gone: listed with the images (and reported when read), never skipped
    silently."""
    return path.is_symlink() and not path.exists()


def is_image_file(path: Path) -> bool:
    """A file (or a broken link) named like an image."""
    return path.suffix.lower() in IMAGE_SUFFIXES and (path.is_file() or is_broken_link(path))


def list_images(folder: str | Path) -> list[Path]:
    """Test images directly in folder or in patient sub-folders, sorted by name; names must be unique (a
    submission names an image by its file name only)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(folder, "is a file; expected the folder of test images" if folder.exists()
                        else "image folder not found")
    paths = sorted((p for p in folder.rglob("*") if is_image_file(p)),  # a broken link too: reported when read
                   key=lambda p: p.name)
    if not paths:
        raise DataError(folder, "no images found (PNG or JPEG, directly or in sub-folders)")
    for a, b in zip(paths, paths[1:]):
        if a.name == b.name:
            raise DataError(b, f"same file name as {a}; the submission identifies images by name only")
    return paths


def orientation_summary(paths: list[str]) -> str | None:
    """One line for the images read as stored although an EXIF tag asks to turn them, or None."""
    if not paths:
        return None
    n = len(paths)
    return (f"{n} image{'s' if n > 1 else ''} carr{'y' if n > 1 else 'ies'} an EXIF orientation tag (first: "
            f"{paths[0]}); read as stored, the tag ignored: the polygons must refer to the stored pixels")


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
