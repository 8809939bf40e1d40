"""Polygons -> per-class binary masks (multi-label: classes overlap, one channel per class)."""

from __future__ import annotations

from typing import Iterable, Sequence

import cv2
import numpy as np

from .classes import NUM_CLASSES

# fillPoly takes fixed-point vertices; 4 fractional bits keep sub-pixel accuracy when rescaling.
_SHIFT = 4


def polygon_mask(points: np.ndarray, src_hw: tuple[int, int], out_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Rasterise one polygon given in source-pixel coordinates onto a uint8 {0,1} mask of size out_hw.

    A vertex at pixel (x, y) covers that pixel: at native size the polygon's own boundary pixels are inside,
    which is how the annotation tool drew them.
    """
    out_hw = out_hw or src_hw
    mask = np.zeros(out_hw, np.uint8)
    fill_polygons(mask, [points], src_hw)
    return mask


def fill_polygons(mask: np.ndarray, polygons: Iterable[np.ndarray], src_hw: tuple[int, int]) -> None:
    """Fill polygons (source-pixel coordinates) into mask in place, scaling to the mask's size."""
    sy = mask.shape[0] / src_hw[0]
    sx = mask.shape[1] / src_hw[1]
    scaled = []
    for points in polygons:
        p = np.asarray(points, np.float64)
        # Pixel centres map to pixel centres: x_out + 0.5 = (x_src + 0.5) * scale.
        q = np.empty_like(p)
        q[:, 0] = (p[:, 0] + 0.5) * sx - 0.5
        q[:, 1] = (p[:, 1] + 0.5) * sy - 0.5
        scaled.append(np.round(q * (1 << _SHIFT)).astype(np.int32))
    h, w = mask.shape[:2]
    inside, past = [], []
    for s in scaled:  # a polygon reaching past the mask (convert.dataset.EDGE_TOLERANCE) is drawn apart
        fits = s.min() >= 0 and s[:, 0].max() >> _SHIFT < w and s[:, 1].max() >> _SHIFT < h
        (inside if fits else past).append(s)
    if inside:
        cv2.fillPoly(mask, inside, 1, lineType=cv2.LINE_8, shift=_SHIFT)
    for s in past:
        _fill_cut(mask, s)


def _fill_cut(mask: np.ndarray, fixed: np.ndarray) -> None:
    """Fill a fixed-point polygon reaching past the mask as if drawn on a larger canvas and cut to the mask.

    cv2.fillPoly's own clipping moves the edges near a vertex outside the canvas by a pixel or so, so the
    polygon is drawn on a canvas of its own bounding box (whole-pixel shifts are exact) and the overlap copied.
    """
    lo = (fixed.min(axis=0) >> _SHIFT) - 1
    hi = (fixed.max(axis=0) >> _SHIFT) + 2
    canvas = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
    cv2.fillPoly(canvas, [fixed - (lo << _SHIFT).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    h, w = mask.shape[:2]
    x0, y0 = max(0, lo[0]), max(0, lo[1])
    x1, y1 = min(w, hi[0]), min(h, hi[1])
    if x0 < x1 and y0 < y1:
        mask[y0:y1, x0:x1] |= canvas[y0 - lo[1]:y1 - lo[1], x0 - lo[0]:x1 - lo[0]]


def class_masks(
    polygons: Sequence[tuple[int, np.ndarray]],
    src_hw: tuple[int, int],
    out_hw: tuple[int, int] | None = None,
    num_classes: int = NUM_CLASSES,
) -> np.ndarray:
    """(class index, points) pairs -> (num_classes, H, W) uint8 {0,1}; several polygons of one class are united."""
    out_hw = out_hw or src_hw
    masks = np.zeros((num_classes, *out_hw), np.uint8)
    for cls, points in polygons:
        fill_polygons(masks[cls], [points], src_hw)
    return masks
