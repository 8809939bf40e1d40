"""The competition metric: Dice per (image, class) on full-size masks, averaged over images, then classes."""

from __future__ import annotations

import numpy as np

from .region import Region


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(C, H, W) binary masks at the image's native size -> (C,) Dice; a class empty in both counts as 1."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ: score at native size")
    p = pred.reshape(len(pred), -1).astype(bool, copy=False)
    t = truth.reshape(len(truth), -1).astype(bool, copy=False)
    inter = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], np.float64)
    total = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def region_contains(region: Region, truth: np.ndarray, classes) -> bool:
    """Whether every labelled pixel of the given classes lies inside the region."""
    ys, xs = region.slices
    return all(np.count_nonzero(truth[c][ys, xs]) == np.count_nonzero(truth[c]) for c in classes)
