"""Boxes, crops and the way back: the one place that maps between image pixels and the network's input grid.

A box is (x0, y0, x1, y1) in image pixels, x1 / y1 exclusive, and may reach outside the image: what lies outside
reads as zero (black, unlabelled), exactly as stage 1's regions near the border will. Every resize here uses
the pixel-centre convention (cv2 linear / area / nearest-exact, torch bilinear with align_corners=False), so a
crop resized to the input and its prediction resized back land on the same pixels.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

Box = tuple[int, int, int, int]


def box_hw(box: Box) -> tuple[int, int]:
    return box[3] - box[1], box[2] - box[0]


def scale_box(box: Box, factor: float, shift: tuple[float, float] = (0.0, 0.0)) -> Box:
    """The box's sides times factor, its centre moved by shift (fractions of its own width and height)."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, cy = (x0 + x1) / 2 + shift[0] * w, (y0 + y1) / 2 + shift[1] * h
    nw, nh = max(1, int(round(w * factor))), max(1, int(round(h * factor)))  # sides first: a square stays square
    x0, y0 = int(round(cx - nw / 2)), int(round(cy - nh / 2))
    return (x0, y0, x0 + nw, y0 + nh)


def jitter_box(box: Box, rng: np.random.Generator, shift: float, scale: tuple[float, float]) -> Box:
    """A random nearby box: both sides scaled by one factor (a square stays square), the centre shifted."""
    factor = float(rng.uniform(*scale))
    return scale_box(box, factor, tuple(rng.uniform(-shift, shift, size=2)))


def reach(shift: float, scale_max: float, rotate_deg: float) -> float:
    """Side of the box, relative to the region's, that holds every jittered box and its rotation margin."""
    return (scale_max + 2 * shift) * rotation_margin(rotate_deg)


def rotation_margin(rotate_deg: float) -> float:
    """How much larger a square must be to fill a square of side 1 rotated by up to rotate_deg."""
    a = math.radians(min(abs(rotate_deg), 45.0))
    return math.cos(a) + math.sin(a)


def clip_box(box: Box, hw: tuple[int, int]) -> Box:
    h, w = hw
    return (max(box[0], 0), max(box[1], 0), min(box[2], w), min(box[3], h))


def crop_padded(array: np.ndarray, box: Box, origin: tuple[int, int] = (0, 0)) -> np.ndarray:
    """Cut box out of the last two axes of array, zero where the box leaves it. origin is the (x, y) image
    position of array[..., 0, 0], for arrays that are themselves a cut of a larger image."""
    x0, y0, x1, y1 = box[0] - origin[0], box[1] - origin[1], box[2] - origin[0], box[3] - origin[1]
    h, w = array.shape[-2:]
    out = np.zeros(array.shape[:-2] + (y1 - y0, x1 - x0), array.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx0 < sx1 and sy0 < sy1:
        out[..., sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = array[..., sy0:sy1, sx0:sx1]
    return out


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Grey crop -> size x size; area averaging when shrinking (no aliasing), linear when enlarging."""
    shrink = image.shape[0] > size or image.shape[1] > size
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def resize_masks(masks_hwc: np.ndarray, size: int) -> np.ndarray:
    """(h, w, C) {0,1} masks -> (size, size, C); nearest-exact keeps the pixel-centre convention of the image."""
    out = cv2.resize(masks_hwc, (size, size), interpolation=cv2.INTER_NEAREST_EXACT)
    return out.reshape(size, size, -1)  # cv2 drops a channel axis of length 1


# Bilinear sampling reads a 2 x 2 neighbourhood: up to a 2x shrink every source pixel still counts; beyond
# that the crop is area-averaged first, or thin bone edges would alias.
MAX_LINEAR_SHRINK = 2.0


def crop_matrix(box: Box, size: int, angle_deg: float = 0.0, flip: bool = False) -> np.ndarray:
    """3 x 3 affine map from the size x size input grid to image pixels, both in continuous coordinates (pixel
    (0, 0) covers [0, 1) x [0, 1)): box resized to the input, mirrored left-right when flip, turned by angle_deg
    about its centre. The input's centre lands on the box's centre."""
    x0, y0, x1, y1 = box
    a = math.radians(angle_deg)
    turn = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    linear = turn @ np.diag([(x1 - x0) / size * (-1 if flip else 1), (y1 - y0) / size])
    m = np.eye(3)
    m[:2, :2] = linear
    m[:2, 2] = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) - linear @ np.array([size / 2, size / 2])
    return m


def footprint(m: np.ndarray, size: int) -> Box:
    """The image-pixel box that holds every pixel sampling the input grid through m reads (one pixel of slack
    for the interpolation's neighbours)."""
    corners = m[:2, :2] @ np.array([[0, size, 0, size], [0, 0, size, size]], float) + m[:2, 2:]
    (x0, y0), (x1, y1) = np.floor(corners.min(axis=1)) - 1, np.ceil(corners.max(axis=1)) + 1
    return (int(x0), int(y0), int(x1), int(y1))


def _shift(dx: float, dy: float) -> np.ndarray:
    t = np.eye(3)
    t[:2, 2] = dx, dy
    return t


def warp(array: np.ndarray, origin: tuple[int, int], m: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    """Sample array ((h, w) or (h, w, channels), its pixel [0, 0] at image position origin) on the size x size
    input grid that m maps into the image: one resampling, zero outside the array."""
    local = _shift(-origin[0], -origin[1]) @ m
    cv = _shift(-0.5, -0.5) @ local @ _shift(0.5, 0.5)  # cv2 puts pixel centres on integers
    out = cv2.warpAffine(array, cv[:2], (size, size), flags=interpolation | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out.reshape((size, size) + array.shape[2:])  # cv2 drops a channel axis of length 1


def warp_image(image: np.ndarray, origin: tuple[int, int], m: np.ndarray, size: int) -> np.ndarray:
    """Grey image -> the size x size input through m, bilinear; area-averaged first when m shrinks it more than
    MAX_LINEAR_SHRINK times."""
    shrink = math.sqrt(abs(np.linalg.det(m[:2, :2])))
    if shrink > MAX_LINEAR_SHRINK:
        box = footprint(m, size)
        cut = crop_padded(image, box, origin)
        h, w = max(1, round(cut.shape[0] / shrink)), max(1, round(cut.shape[1] / shrink))
        image = cv2.resize(cut, (w, h), interpolation=cv2.INTER_AREA)
        m = np.diag([w / cut.shape[1], h / cut.shape[0], 1.0]) @ _shift(-box[0], -box[1]) @ m
        origin = (0, 0)
    return warp(image, origin, m, size, cv2.INTER_LINEAR)


def to_native(probs: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """(C, s, s) probabilities on the input grid -> (C, h, w) on the crop's native pixels (bilinear)."""
    if tuple(probs.shape[-2:]) == tuple(hw):
        return probs
    return F.interpolate(probs[None], size=hw, mode="bilinear", align_corners=False)[0]


def paste(canvas: np.ndarray, crop: np.ndarray, box: Box) -> None:
    """Write a (C, h, w) crop into a (C, H, W) canvas at box, in place; the part outside the canvas is dropped."""
    H, W = canvas.shape[-2:]
    x0, y0, x1, y1 = box
    if crop.shape[-2:] != (y1 - y0, x1 - x0):
        raise ValueError(f"crop {crop.shape[-2:]} does not fit box {box}")
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, W), min(y1, H)
    if cx0 < cx1 and cy0 < cy1:
        canvas[..., cy0:cy1, cx0:cx1] = crop[..., cy0 - y0:cy1 - y0, cx0 - x0:cx1 - x0]
