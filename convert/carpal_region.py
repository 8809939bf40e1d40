"""The carpal region: ONE rule from class masks to the box stage 2 looks at.

Stage 1 applies it to predicted masks, stage 2's training to ground-truth masks, so both crop alike.
When too few carpal bones are found the region is derived from the neighbours (metacarpals, radius, ulna)
and, failing that, from where it sits on average in the training set; the result says which path was taken.
Stage 1 may also detect the region itself (it is trained on this rule's boxes): `region_from_box` finishes such a
box as the rule finishes its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from plumbing.values import check_range

from .classes import CARPAL_INDICES, CLASS_INDEX

# every way a region can come about, in the order stage 1 tries them (reports list their counts in this order)
REGION_SOURCES = ("detected", "carpals", "neighbours", "prior")
METACARPALS = tuple(CLASS_INDEX[f"finger-{i}"] for i in (3, 7, 11, 15, 19))
FOREARM = (CLASS_INDEX["Radius"], CLASS_INDEX["Ulna"])
# the only classes the rule reads: masks of the others may be left empty (rasterising all 29 at 2048 px costs 5x)
RULE_CLASSES = tuple(sorted(CARPAL_INDICES + METACARPALS + FOREARM))


@dataclass(frozen=True)
class RegionPrior:
    """Where the carpal box sits, measured on training masks (see fit_region_prior); the defaults are the
    real data's figures (carpal region about x 590-1310, y 870-1700 of 2048)."""

    mean_box: tuple[float, float, float, float] = (0.29, 0.42, 0.64, 0.83)  # x0, y0, x1, y1 / image size
    along: float = 0.55   # carpal centre = forearm centroid + along * (metacarpal centroid - forearm centroid)
    side_ratio: float = 0.9  # carpal box side / distance between those two centroids (90th percentile)

    def __post_init__(self):
        # ValueError: configs.build prefixes the section and names the file
        x0, y0, x1, y1 = self.mean_box
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError(f"mean_box: need 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {list(self.mean_box)}")
        check_range("side_ratio", self.side_ratio, 0, lo_open=True)


@dataclass(frozen=True)
class RegionConfig:
    margin: float = 0.12      # added on each side, as a fraction of the carpal box's longer side
    min_side: float = 0.15    # at least this fraction of the image's shorter side
    square: bool = True       # stage 2 resizes to a square input; a square crop keeps the aspect
    min_carpals: int = 5      # fewer carpal bones found -> derive the region from the neighbours
    prior: RegionPrior = field(default_factory=RegionPrior)

    def __post_init__(self):
        # ValueError: configs.build prefixes the section and names the file
        check_range("margin", self.margin, 0)
        check_range("min_side", self.min_side, 0, 1)  # 0: no floor (fit_region_prior uses it)
        if not isinstance(self.square, bool):
            raise ValueError(f"square: need true or false, got {self.square!r}")
        # 0 would take the carpal path with no carpal found (and fail); above 8 (all carpals) it is never taken
        check_range("min_carpals", self.min_carpals, 1, len(CARPAL_INDICES))


@dataclass(frozen=True)
class Region:
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, x1 / y1 exclusive
    source: str                     # one of REGION_SOURCES

    @property
    def slices(self) -> tuple[slice, slice]:
        x0, y0, x1, y1 = self.box
        return slice(y0, y1), slice(x0, x1)


def bounding_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """x0, y0, x1, y1 (exclusive) of a 2-D mask's nonzero pixels; None when it has none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0]:rows[-1] + 1].any(axis=0))
    return float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)


def _centroid(masks: np.ndarray, classes) -> np.ndarray | None:
    total, acc = 0, np.zeros(2)
    for c in classes:
        box = bounding_box(masks[c])
        if box is None:
            continue
        x0, y0, x1, y1 = (int(v) for v in box)
        ys, xs = np.nonzero(masks[c, y0:y1, x0:x1])  # inside the box: a bone is a small part of a 2048 image
        total += xs.size
        acc += (xs.sum() + x0 * xs.size, ys.sum() + y0 * xs.size)
    return acc / total if total else None


def _finish(cx: float, cy: float, w: float, h: float, hw: tuple[int, int], cfg: RegionConfig, source: str) -> Region:
    """Margin, square, minimum size, then clip; a square box is shifted inside the image rather than cut."""
    H, W = hw
    pad = cfg.margin * max(w, h)
    w, h = w + 2 * pad, h + 2 * pad
    if cfg.square:
        w = h = max(w, h)
    floor = cfg.min_side * min(H, W)
    w, h = min(max(w, floor), W), min(max(h, floor), H)
    x0 = min(max(cx - w / 2, 0.0), W - w)
    y0 = min(max(cy - h / 2, 0.0), H - h)
    # at least one pixel each way, inside the image: rounding could leave a tiny image's box empty
    bx0, by0 = min(max(int(round(x0)), 0), W - 1), min(max(int(round(y0)), 0), H - 1)
    bx1, by1 = min(max(int(round(x0 + w)), bx0 + 1), W), min(max(int(round(y0 + h)), by0 + 1), H)
    return Region((bx0, by0, bx1, by1), source)


def carpal_region(masks: np.ndarray, cfg: RegionConfig = RegionConfig()) -> Region:
    """(29, H, W) binary masks (predicted or ground truth) -> the carpal region; never fails on empty masks."""
    hw = masks.shape[1:]
    boxes = [b for b in (bounding_box(masks[c]) for c in CARPAL_INDICES) if b is not None]
    if len(boxes) >= cfg.min_carpals:
        x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
        x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
        return _finish((x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0, hw, cfg, "carpals")
    meta, fore = _centroid(masks, METACARPALS), _centroid(masks, FOREARM)
    if meta is not None and fore is not None and np.linalg.norm(meta - fore) > 1:
        centre = fore + cfg.prior.along * (meta - fore)
        side = cfg.prior.side_ratio * float(np.linalg.norm(meta - fore))
        # the learned side ratio already includes the margin
        return _finish(*centre, side, side, hw, replace(cfg, margin=0.0), "neighbours")
    H, W = hw
    x0, y0, x1, y1 = cfg.prior.mean_box
    return _finish((x0 + x1) / 2 * W, (y0 + y1) / 2 * H, (x1 - x0) * W, (y1 - y0) * H, hw,
                   replace(cfg, margin=0.0), "prior")


def region_from_box(box, hw: tuple[int, int], cfg: RegionConfig, box_margin: float,
                    source: str = "detected", grow: float = 1.0) -> Region:
    """A box that already holds a margin of `box_margin` (stage 1's detection of the exported region, which is
    the rule's final box) finished as the rule finishes its own: the margin changed to cfg.margin when the two
    differ, then square, minimum size and clipping, so stage 2 crops it alike. `grow`: the side multiplied by
    this besides (room for a detector's offset)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    grow *= (1 + 2 * cfg.margin) / (1 + 2 * box_margin)  # the rule's side is the carpals' side x (1 + 2 margin)
    return _finish((x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * grow, (y1 - y0) * grow, hw,
                   replace(cfg, margin=0.0), source)


def describe_sources(counts) -> str:
    """`detected 10, carpals 2, neighbours 0, prior 0`: every source named, in the order they are tried."""
    known = [f"{s} {counts.get(s, 0)}" for s in REGION_SOURCES]
    return ", ".join(known + [f"{s} {n}" for s, n in counts.items() if s not in REGION_SOURCES])


def fit_region_prior(mask_sets, cfg: RegionConfig = RegionConfig()) -> RegionPrior:
    """Measure the prior on ground-truth (29, H, W) mask stacks: mean normalised carpal box, and where the carpal
    centre sits between the forearm and metacarpal centroids."""
    boxes, alongs, ratios = [], [], []
    for masks in mask_sets:
        H, W = masks.shape[1:]
        region = carpal_region(masks, replace(cfg, min_side=0.0, min_carpals=1))
        if region.source != "carpals":
            continue
        x0, y0, x1, y1 = region.box
        boxes.append((x0 / W, y0 / H, x1 / W, y1 / H))
        meta, fore = _centroid(masks, METACARPALS), _centroid(masks, FOREARM)
        if meta is None or fore is None:
            continue
        axis = meta - fore
        dist = float(np.linalg.norm(axis))
        if dist <= 1:
            continue
        centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        alongs.append(float((centre - fore) @ axis) / dist ** 2)
        ratios.append(max(x1 - x0, y1 - y0) / dist)
    if not boxes:
        return cfg.prior
    mean_box = tuple(float(v) for v in np.mean(boxes, axis=0))
    along = float(np.median(alongs)) if alongs else cfg.prior.along
    # a generous fallback: a crop too large costs a little resolution, one too small loses bones
    ratio = float(np.quantile(ratios, 0.9)) if ratios else cfg.prior.side_ratio
    return RegionPrior(mean_box, along, ratio)
