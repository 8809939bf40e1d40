"""Wrist pose read from the labels: is the hand turned against the forearm?

Bent wrists were 11% of the real training images but 58% of the test images (docs/earlier-work.md), so a score
averaged over held-out images mostly measures straight wrists. Scoring each pose apart, and mixing the two at
the test set's share, estimates what the test will see.
"""

from __future__ import annotations

import numpy as np

from .classes import CLASS_INDEX

BENT_DEGREES = 10.0      # hand axis (middle metacarpal) vs forearm axis (radius) beyond this: a bent wrist
TEST_BENT_SHARE = 0.58   # share of bent wrists in the real test set (docs/earlier-work.md)
TRAIN_BENT_SHARE = 0.11  # and in the real training set
HAND_AXIS, FOREARM_AXIS = CLASS_INDEX["finger-11"], CLASS_INDEX["Radius"]


def long_axis_degrees(mask: np.ndarray) -> float:
    """Direction of a mask's long axis in degrees, modulo 180, from its second moments; NaN for < 2 pixels."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 2:
        return float("nan")
    w, v = np.linalg.eigh(np.cov(np.stack([xs, ys]).astype(np.float64)))
    x, y = v[:, np.argmax(w)]
    return float(np.degrees(np.arctan2(y, x)) % 180.0)


def wrist_turn(masks: np.ndarray) -> float:
    """Angle (0-90 degrees) between the middle metacarpal and the radius in (29, H, W) class masks; NaN when
    either is unlabelled. A whole-image rotation leaves it unchanged."""
    d = abs(long_axis_degrees(masks[HAND_AXIS]) - long_axis_degrees(masks[FOREARM_AXIS]))
    return min(d, 180.0 - d)


def is_bent(masks: np.ndarray, degrees: float = BENT_DEGREES) -> bool:
    """A bent wrist; False when the pose cannot be read (a missing middle metacarpal or radius)."""
    return bool(wrist_turn(masks) > degrees)


def pose_weights(bent: np.ndarray, bent_share: float | None) -> np.ndarray:
    """Per-image weights (summing to 1) that give the bent images `bent_share` of the total and the straight
    ones the rest, each image equal within its group. Uniform when bent_share is None or a group is empty:
    nothing can be reweighted then."""
    bent = np.asarray(bent, bool)
    n = len(bent)
    n_bent = int(bent.sum())
    if bent_share is None or n_bent in (0, n):
        return np.full(n, 1.0 / n) if n else np.zeros(0)
    return np.where(bent, bent_share / n_bent, (1.0 - bent_share) / (n - n_bent))


def mix_poses(sums: np.ndarray, counts: np.ndarray, bent_share: float | None) -> np.ndarray:
    """Mean of per-image values from their sums over straight (row 0) and bent (row 1) images, the two poses
    weighed as pose_weights weighs them. For running totals that cannot keep every image (sharded validation)."""
    sums, counts = np.asarray(sums, np.float64), np.asarray(counts, np.float64)
    if bent_share is None or not counts.all():
        return sums.sum(axis=0) / max(counts.sum(), 1.0)
    return (1.0 - bent_share) * sums[0] / counts[0] + bent_share * sums[1] / counts[1]
