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
