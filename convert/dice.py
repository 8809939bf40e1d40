"""The competition metric: Dice per (image, class) on full-size masks, averaged over images, then classes."""

from __future__ import annotations

import numpy as np

from .carpal_region import Region, bounding_box


def dice_per_class(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(C, H, W) binary masks at the image's native size -> (C,) Dice; a class empty in both counts as 1.

    Each class is counted inside the box around its predicted and true pixels only: a bone covers 0.1-2% of a
    2048 image, and the counts (so the Dice) are the same as over the whole image."""
    if pred.shape != truth.shape:
        raise ValueError(f"prediction {pred.shape} and truth {truth.shape} differ: score at native size")
    dice = np.ones(len(pred))
    for c, (p, t) in enumerate(zip(pred, truth)):
        boxes = [b for b in (bounding_box(p), bounding_box(t)) if b is not None]
        if not boxes:
            continue
        x0, y0 = int(min(b[0] for b in boxes)), int(min(b[1] for b in boxes))
        x1, y1 = int(max(b[2] for b in boxes)), int(max(b[3] for b in boxes))
        p = p[y0:y1, x0:x1].astype(bool, copy=False)
        t = t[y0:y1, x0:x1].astype(bool, copy=False)
        dice[c] = 2 * np.count_nonzero(p & t) / (np.count_nonzero(p) + np.count_nonzero(t))
    return dice


def region_contains(region: Region, truth: np.ndarray, classes) -> bool:
    """Whether every labelled pixel of the given classes lies inside the region."""
    ys, xs = region.slices
    return all(np.count_nonzero(truth[c][ys, xs]) == np.count_nonzero(truth[c]) for c in classes)
