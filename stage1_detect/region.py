"""Stage 1's carpal region: its own detection of the region when confident enough, else THE rule's chain on its
bone masks (carpals -> neighbours -> prior)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from convert.carpal_region import Region, RegionConfig, carpal_region, region_from_box


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in the image's own pixels, as ultralytics scales it
    conf: float


def pick_region(masks: np.ndarray, detection: Detection | None, cfg: RegionConfig, min_conf: float,
                box_margin: float | None = None, grow: float = 1.0) -> Region:
    """The detection finished as the rule finishes its boxes ("detected") when its confidence is at least
    min_conf; else carpal_region on the (29, H, W) masks. `box_margin`: the margin the detector's training boxes
    held (the converted set's rule); None: cfg's own. `grow`: the detected box's side multiplied by this."""
    if detection is not None and detection.conf >= min_conf:
        margin = cfg.margin if box_margin is None else box_margin
        return region_from_box(detection.box, masks.shape[1:], cfg, margin, "detected", grow)
    return carpal_region(masks, cfg)
