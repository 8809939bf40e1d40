"""Synthetic hand radiographs with polygon labels, written in the competition's exact layout.

The real images are private, so tests, the demo and CI run on look-alikes made here: a parametric hand
(29 bones placed by an anatomy table), a random pose (rotation, scale, shift, finger spread, bent wrists),
polygons annotated with the uneven point density of the real JSON, and an X-ray-like rendering of exactly
the masks those polygons rasterise to (`convert.masks.class_masks`), so that image and labels agree.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from .atomic import atomic_path, replace_dir, write_text
from .classes import CLASS_INDEX, CLASSES
from .config import CONFIG_DIR, load_config
from .dataset import IMAGE_DIR, LABEL_DIR, bounded_map
from .errors import CascadeError, DataError
from .masks import class_masks

# ----------------------------------------------------------------------------------------------------------
# Anatomy of an upright right hand (thumb on the image's left), in pixels of a 2048 x 2048 image at about
# 66 px per cm: the scale at which finger-16 is ~3,900 px and Pisiform ~4,300 px as in the real data.
# Hand frame: origin at the wrist pivot (centre of the radiocarpal joint), x towards the little finger,
# y down the forearm (image axes). Angles in degrees: 0 points to the fingertips, + leans to the little finger.
# ----------------------------------------------------------------------------------------------------------
REF_SIZE = 2048

# Where the wrist pivot sits in an unposed 2048 image: puts the mean carpal box near the real one.
PIVOT_XY = (935.0, 1380.0)

# A wrist turned towards the thumb rolls on the radial styloid, one turned towards the little finger on the
# ulnar side, so the proximal carpal row slides along the radius instead of sinking into it: the bend centre
# for negative and positive wrist angles (hand frame, reference px).
BEND_CENTRES = ((-100.0, -40.0), (90.0, -40.0))

# Joint space between consecutive bones of a ray (about 2 mm).
JOINT_GAP = 14.0

# Finger rays, thumb first: (classes base -> tip, base point (x, y), direction, bones base -> tip as
# (length, base half-width, shaft half-width, head half-width)). Lengths follow adult hand anatomy.
RAYS = (
    (("finger-3", "finger-2", "finger-1"), (-162, -218), -40.0,
     ((300, 40, 26, 36), (205, 38, 24, 31), (150, 33, 20, 25))),
    (("finger-7", "finger-6", "finger-5", "finger-4"), (-66, -241), -8.0,
     ((435, 39, 26, 39), (258, 40, 26, 34), (158, 33, 21, 27), (124, 31, 17, 21))),
    (("finger-11", "finger-10", "finger-9", "finger-8"), (0, -244), 0.0,
     ((422, 41, 27, 40), (284, 41, 27, 35), (185, 34, 22, 28), (130, 32, 17, 21))),
    (("finger-15", "finger-14", "finger-13", "finger-12"), (64, -232), 7.0,
     ((376, 35, 23, 36), (264, 38, 25, 32), (172, 31, 20, 26), (124, 30, 16, 20))),
    (("finger-19", "finger-18", "finger-17", "finger-16"), (120, -209), 16.0,
     ((350, 34, 22, 34), (211, 34, 22, 28), (125, 27, 17, 22), (112, 28, 15, 18))),
)

# Depth of a bone's rounded ends as a fraction of the end's half-width: (base, head). Metacarpal heads are
# round, phalangeal bases flat (concave in reality), distal phalanges end in a tuft.
CAPS = {"metacarpal": (0.3, 0.9), "phalanx": (0.3, 0.55), "distal": (0.3, 0.8)}

# Carpal bones: (centre x, y, half-length along the axis, half-width, axis direction, superellipse exponent:
# 2 is an ellipse, larger is boxier). Positions make the articulations of the contract: MC1 on Trapezium, MC2
# on Trapezoid, MC3 on Capitate, MC4/MC5 on Hamate; Pisiform over Triquetrum, Trapezium over Trapezoid.
CARPAL_SHAPES = {
    "Trapezium": (-125, -186, 50, 42, -35.0, 2.3),
    "Trapezoid": (-85, -209, 42, 37, -5.0, 2.6),
    "Capitate": (-5, -172, 78, 50, 0.0, 2.6),
    "Hamate": (76, -172, 64, 48, 15.0, 2.4),
    "Scaphoid": (-104, -84, 85, 40, -55.0, 2.2),
    "Lunate": (-5, -54, 48, 52, 0.0, 2.2),
    "Triquetrum": (88, -80, 48, 40, 55.0, 2.3),
    "Pisiform": (108, -71, 38, 37, 20.0, 2.0),
}

# Forearm bones, distal end up: (centre x of the shaft, y of the distal end, length, shaft half-width,
# distal half-width, flare length, sideways shift of the distal end, tilt of the distal surface (+: the thumb
# side reaches further), depth of the distal cap). Both are long enough to leave the image at any pose.
# Radius: wide distal end flaring to the thumb side, its styloid reaching furthest (radial inclination).
# Ulna: narrower, ending short of the radius (ulnar variance), its styloid on the little-finger side.
FOREARM_SHAPES = {
    "Radius": (-40, -24, 2000, 46, 98, 300, -12, 12.0, 0.2),
    "Ulna": (62, 28, 2000, 34, 46, 220, 5, -15.0, 0.5),
}


# ----------------------------------------------------------------------------------------------------------
# Configuration: every tunable number; defaults equal configs/synth.yaml.
# ----------------------------------------------------------------------------------------------------------
MIN_SIZE, MAX_SIZE = 128, 4096  # image sides generate() accepts


def _check_ranges(obj, signed: Sequence[str] = (), positive: Sequence[str] = ()) -> None:
    """ValueError naming the first bad field: a [lo, hi] pair needs lo <= hi; numbers (a pair's lo) must be
    >= 0 unless `signed`, > 0 if `positive`. Messages start with the key: convert.config.build adds the section."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, tuple):
            if len(value) != 2 or not value[0] <= value[1]:
                raise ValueError(f"{f.name}: need [lo, hi] with lo <= hi, got {list(value)}")
            value = value[0]
        if f.name in positive and not value > 0:
            raise ValueError(f"{f.name}: need {f.name} > 0, got {value}")
        if f.name not in signed and not value >= 0:
            raise ValueError(f"{f.name}: need {f.name} >= 0, got {value}")


@dataclass
class PoseConfig:
    rotation_deg: float = 12.0
    scale: tuple[float, float] = (0.94, 1.12)
    shift_frac: float = 0.07
    spread_deg: tuple[float, float] = (-3.0, 6.0)
    joint_deg: float = 2.5
    thumb_deg: float = 6.0
    bent_wrist_prob: float = 0.3
    bent_deg: tuple[float, float] = (12.0, 30.0)
    bent_foreshorten: tuple[float, float] = (0.6, 0.85)
    natural_wrist_deg: float = 3.0
    size_jitter: float = 0.04
    carpal_jitter_px: float = 4.0
    wobble: float = 0.04
    margin_frac: float = 0.01
    max_tries: int = 30

    def __post_init__(self):
        _check_ranges(self, signed=("spread_deg",), positive=("scale", "bent_foreshorten", "max_tries"))
        if self.bent_wrist_prob > 1:
            raise ValueError(f"bent_wrist_prob: need a probability within 0..1, got {self.bent_wrist_prob}")
        if self.margin_frac >= 0.5:
            raise ValueError(f"margin_frac: need margin_frac < 0.5 (a margin on each side), got {self.margin_frac}")


@dataclass
class PointsConfig:
    spacing_px: tuple[float, float] = (1.2, 14.0)
    min_points: int = 8

    def __post_init__(self):
        _check_ranges(self, positive=("spacing_px",))  # spacing is drawn log-uniform
        if self.min_points < 3:
            raise ValueError(f"min_points: need min_points >= 3 (a polygon), got {self.min_points}")


@dataclass
class RenderConfig:
    background: tuple[float, float] = (0.02, 0.08)
    background_gradient: float = 0.04
    tissue: tuple[float, float] = (0.25, 0.4)
    tissue_ramp_px: float = 60.0
    tissue_margin: float = 1.0
    cortex: tuple[float, float] = (1.0, 1.3)
    medulla: tuple[float, float] = (0.35, 0.5)
    cortex_frac: float = 0.15
    bone_jitter: float = 0.08
    texture: float = 0.1
    texture_cells: int = 128
    gain: tuple[float, float] = (0.8, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    headroom: tuple[float, float] = (1.0, 1.1)
    noise: tuple[float, float] = (0.01, 0.035)
    blur_px: tuple[float, float] = (0.6, 2.0)

    def __post_init__(self):
        _check_ranges(self, positive=("texture_cells",))


@dataclass
class SynthConfig:
    pose: PoseConfig = field(default_factory=PoseConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


def load_synth_config(path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> SynthConfig:
    """configs/synth.yaml (or path), updated by `section.key=value` overrides."""
    return load_config(SynthConfig, CONFIG_DIR / "synth.yaml" if path is None else path, overrides)


# ----------------------------------------------------------------------------------------------------------
# Shapes (hand frame, reference pixels)
# ----------------------------------------------------------------------------------------------------------
def _smooth01(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _long_bone(length: float, w_base: float, w_shaft: float, w_head: float, cap_base: float, cap_head: float,
               flare: float = 0.3, head_shift: float = 0.0, head_tilt_deg: float = 0.0, n: int = 40) -> np.ndarray:
    """Closed outline of an elongated bone in local (u, v): u along the axis from base (0) to head (length),
    v across. Ends are elliptical caps; the shaft narrows between the flared ends over `flare` of the length."""
    cb, ch = cap_base * w_base, cap_head * w_head
    t = np.linspace(0.0, 1.0, n)
    u = cb + t * (length - cb - ch)
    g_base = _smooth01(1.0 - t / flare)
    g_head = _smooth01((t - (1.0 - flare)) / flare) ** 2  # squared: the flare is concave, steepest at the end
    w = w_shaft + (w_base - w_shaft) * g_base + (w_head - w_shaft) * g_head
    c = head_shift * g_head
    phi = np.linspace(0.0, np.pi, n // 2 + 2)[1:-1]
    head = np.stack([u[-1] + ch * np.sin(phi), c[-1] + w[-1] * np.cos(phi)], 1)
    base = np.stack([u[0] - cb * np.sin(phi), c[0] - w[0] * np.cos(phi)], 1)
    pts = np.concatenate([np.stack([u, c + w], 1), head, np.stack([u, c - w], 1)[::-1], base])
    if head_tilt_deg:
        # Shear the distal end so that one side reaches further (the radial / ulnar styloids).
        g = np.interp(pts[:, 0], u, g_head)
        pts[:, 0] -= np.tan(np.radians(head_tilt_deg)) * (pts[:, 1] - np.interp(pts[:, 0], u, c)) * g
    return pts


def _blob(a: float, b: float, exponent: float, wobble: np.ndarray, n: int = 48) -> np.ndarray:
    """Closed superellipse outline in local (u, v) with half-axes a (along) and b (across); `wobble` holds
    (amplitude, phase) rows of harmonics 2, 3, ... that make each bone a little irregular."""
    phi = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    c, s = np.cos(phi), np.sin(phi)
    p = 2.0 / exponent
    r = np.ones_like(phi)
    for k, (amp, phase) in enumerate(wobble, start=2):
        r += amp * np.cos(k * phi + phase)
    return np.stack([a * np.sign(c) * np.abs(c) ** p * r, b * np.sign(s) * np.abs(s) ** p * r], 1)


def _direction(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors along (towards the fingertips) and across (to the little-finger side) a bone."""
    a = np.radians(angle_deg)
    return np.array([np.sin(a), -np.cos(a)]), np.array([np.cos(a), np.sin(a)])


def _place(local: np.ndarray, origin: Sequence[float], angle_deg: float) -> np.ndarray:
    along, across = _direction(angle_deg)
    return np.asarray(origin, np.float64) + local[:, :1] * along + local[:, 1:] * across


@dataclass
class _Pose:
    left: bool
    bent: bool
    wrist_deg: float  # rotation of the hand distal to the wrist relative to the forearm
    foreshorten: float  # shortening of the hand along its axis (a flexed wrist seen from above)
    spread_deg: float  # extra fanning between neighbouring fingers
    rotation_deg: float
    scale: float
    shift: np.ndarray  # reference pixels


def _sample_pose(rng: np.random.Generator, left: bool, bent: bool, p: PoseConfig) -> _Pose:
    if bent:
        wrist = float(rng.choice((-1.0, 1.0)) * rng.uniform(*p.bent_deg))
        fore = float(rng.uniform(*p.bent_foreshorten))
    else:
        wrist, fore = float(rng.normal(0.0, p.natural_wrist_deg)), 1.0
    return _Pose(left, bent, wrist, fore, float(rng.uniform(*p.spread_deg)),
                 float(rng.uniform(-p.rotation_deg, p.rotation_deg)), float(rng.uniform(*p.scale)),
                 rng.uniform(-p.shift_frac, p.shift_frac, 2) * REF_SIZE)


def _jit(rng: np.random.Generator, sd: float) -> float:
    """A multiplicative size jitter, kept positive."""
    return float(np.clip(1.0 + rng.normal(0.0, sd), 0.7, 1.3))


def _hand_outlines(rng: np.random.Generator, pose: _Pose, p: PoseConfig) -> tuple[dict[str, np.ndarray], set[str]]:
    """Outlines of all 29 bones in the hand frame before the wrist bend, and which of them are distal to
    the wrist (everything but the forearm)."""
    out: dict[str, np.ndarray] = {}
    for name, (cx, cy, a, b, ang, expo) in CARPAL_SHAPES.items():
        wobble = np.stack([rng.normal(0.0, p.wobble, 2), rng.uniform(0.0, 2 * np.pi, 2)], 1)
        centre = (cx + rng.normal(0.0, p.carpal_jitter_px), cy + rng.normal(0.0, p.carpal_jitter_px))
        s = _jit(rng, p.size_jitter)
        out[name] = _place(_blob(a * s, b * s, expo, wobble), centre, ang + rng.normal(0.0, p.joint_deg))
    for ray, (names, base, angle, bones) in enumerate(RAYS):
        # The middle finger (ray 2) stays put; the others fan out by the spread; the thumb moves more freely.
        angle += pose.spread_deg * (ray - 2) + (rng.normal(0.0, p.thumb_deg) if ray == 0 else 0.0)
        origin = np.asarray(base, np.float64)
        s_ray = _jit(rng, p.size_jitter)
        for k, (name, (length, wb, ws, wh)) in enumerate(zip(names, bones)):
            kind = "metacarpal" if k == 0 else "distal" if k == len(bones) - 1 else "phalanx"
            if k:
                angle += rng.normal(0.0, p.joint_deg)
            sl, sw = s_ray * _jit(rng, p.size_jitter / 2), s_ray * _jit(rng, p.size_jitter / 2)
            local = _long_bone(length * sl, wb * sw, ws * sw, wh * sw, *CAPS[kind])
            out[name] = _place(local, origin, angle)
            origin = origin + _direction(angle)[0] * (length * sl + JOINT_GAP)
    distal = set(out)
    for name, (x, y_end, length, ws, wd, flare, shift, tilt, cap) in FOREARM_SHAPES.items():
        s = _jit(rng, p.size_jitter)
        local = _long_bone(length, ws * s, ws * s, wd * s, 0.1, cap, flare=flare / length,
                           head_shift=shift * s, head_tilt_deg=tilt)
        out[name] = _place(local, (x, y_end + length), 0.0)
    return out, distal


def _pose_to_image(outlines: dict[str, np.ndarray], distal: set[str], pose: _Pose, size: int) -> dict[str, np.ndarray]:
    """Hand frame -> image pixels: foreshorten the hand towards the radiocarpal joint and turn it about the
    side it leans to, mirror a left hand, then the global rotation, scale and shift about the wrist pivot."""
    along, across = _direction(pose.wrist_deg)
    g_along, g_across = _direction(pose.rotation_deg)
    k = pose.scale * size / REF_SIZE
    pivot = (np.asarray(PIVOT_XY) + pose.shift) * size / REF_SIZE
    bx, by = BEND_CENTRES[pose.wrist_deg > 0]
    by *= pose.foreshorten
    out = {}
    for name, pts in outlines.items():
        x, y = pts[:, 0], pts[:, 1]
        if name in distal:
            # In the unbent frame the hand points along -y: shorten that axis, then turn by wrist_deg.
            dx, dy = x - bx, y * pose.foreshorten - by
            x = bx + dx * across[0] - dy * along[0]
            y = by + dx * across[1] - dy * along[1]
        if pose.left:
            x = -x
        out[name] = pivot + k * (x[:, None] * g_across - y[:, None] * g_along)
    return out


def _clip_to_box(pts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Sutherland-Hodgman clipping of a closed polygon to the square [lo, hi]^2."""
    for axis, bound, keep_below in ((0, lo, False), (0, hi, True), (1, lo, False), (1, hi, True)):
        if len(pts) == 0:
            break
        inside = pts[:, axis] <= bound if keep_below else pts[:, axis] >= bound
        if inside.all():
            continue
        nxt = np.roll(pts, -1, 0)
        nxt_in = np.roll(inside, -1)
        res = []
        for a, b, a_in, b_in in zip(pts, nxt, inside, nxt_in):
            if a_in:
                res.append(a)
            if a_in != b_in:
                t = (bound - a[axis]) / (b[axis] - a[axis])
                res.append(a + t * (b - a))
        pts = np.asarray(res, np.float64).reshape(-1, 2)
    return pts


def _distinct(points: np.ndarray) -> np.ndarray:
    """Drop consecutive duplicates (and a last point equal to the first)."""
    keep = np.any(points != np.roll(points, 1, 0), axis=1)
    if not keep.any():
        return points[:1]
    return points[keep]


def _annotate(pts: np.ndarray, size: int, rng: np.random.Generator, cfg: PointsConfig) -> np.ndarray:
    """Outline in image pixels -> int32 polygon points the way an annotator clicked them: clipped to the
    image, resampled along the boundary with a spacing drawn per bone (dense tracing to sparse clicks)."""
    pts = _clip_to_box(pts, 0.0, size - 1.0)
    if len(pts) < 3:
        # make_hand's pose redraws prevent this unless the pose settings cannot fit a hand in the image.
        raise CascadeError("a bone fell outside the image: reduce pose.scale or pose.shift_frac, "
                           "or raise pose.max_tries")
    closed = np.vstack([pts, pts[:1]])
    seg = np.hypot(*np.diff(closed, axis=0).T)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    lo, hi = cfg.spacing_px
    spacing = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) * size / REF_SIZE
    n = max(cfg.min_points, int(arc[-1] / max(spacing, 1.0)))
    s = (rng.uniform(0.0, 1.0) + np.arange(n)) * (arc[-1] / n)
    res = np.stack([np.interp(s, arc, closed[:, 0]), np.interp(s, arc, closed[:, 1])], 1)
    out = _distinct(np.clip(np.round(res), 0, size - 1).astype(np.int32))
    if len(np.unique(out, axis=0)) < 3:
        # A bone of a pixel or two (tiny images): fall back to the whole outline, then to a small triangle.
        out = _distinct(np.clip(np.round(pts), 0, size - 1).astype(np.int32))
        if len(np.unique(out, axis=0)) < 3:
            x, y = np.clip(np.round(pts.mean(0)), 1, size - 2).astype(np.int32)
            out = np.array([[x - 1, y + 1], [x + 1, y + 1], [x, y - 1]], np.int32)
    return out


def make_hand(rng: np.random.Generator, size: int, left: bool, cfg: SynthConfig) -> list[tuple[int, np.ndarray]]:
    """29 (class index, int32 (N, 2) x, y points) pairs in class order for a size x size image.

    Poses that would push a finger or carpal bone out of the image are drawn again; the forearm is meant to
    run off the bottom edge and is clipped to it."""
    if size < 16:
        raise CascadeError(f"image size {size} is too small for a hand (use 128 or more)")
    margin = cfg.pose.margin_frac * size
    # Drawn once, outside the retries: bent hands are shorter and fit more often, and redrawing the flag
    # with the rest would tilt the share of bent wrists above bent_wrist_prob.
    bent = bool(rng.random() < cfg.pose.bent_wrist_prob)
    for _ in range(max(1, cfg.pose.max_tries)):
        pose = _sample_pose(rng, left, bent, cfg.pose)
        outlines, distal = _hand_outlines(rng, pose, cfg.pose)
        placed = _pose_to_image(outlines, distal, pose, size)
        hand = np.concatenate([placed[n] for n in distal])
        if hand.min() >= margin and hand.max() <= size - 1 - margin:
            break
    return [(CLASS_INDEX[name], _annotate(placed[name], size, rng, cfg.points)) for name in CLASSES]


# ----------------------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-scale noise varying over about size / cells pixels (bone texture, uneven exposure)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _bone_density(mask: np.ndarray, box: tuple[int, int, int, int], size: int, cortex: float, medulla: float,
                  cortex_frac: float) -> np.ndarray:
    """Projected density of one bone: bright cortical rim fading into a darker medulla, from the distance to
    the bone's edge. Edges that are the image border are not bone edges, so the mask is extended there."""
    x0, y0, x1, y1 = box
    h, w = mask.shape
    pad = min(h, w) // 2 + 2  # beyond half the bone's width, the far side is nearer than the fake edge
    sides = [pad if y0 == 0 else 1, pad if y1 == size else 1, pad if x0 == 0 else 1, pad if x1 == size else 1]
    padded = cv2.copyMakeBorder(mask, *sides, cv2.BORDER_CONSTANT, value=0)
    # Replicate the mask across the sides that touch the image border.
    t, b, l, r = sides
    inner = padded[t:t + h, l:l + w]
    if y0 == 0:
        padded[:t, l:l + w] = inner[:1]
    if y1 == size:
        padded[t + h:, l:l + w] = inner[-1:]
    if x0 == 0:
        padded[:, :l] = padded[:, l:l + 1]
    if x1 == size:
        padded[:, l + w:] = padded[:, l + w - 1:l + w]
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[t:t + h, l:l + w]
    thickness = max(cortex_frac * float(dist.max()), 0.7)
    # A bone is a shell of cortex around a lighter medulla: the projected density rises from the edge to a
    # peak about one cortical thickness in (the bright rim), then falls to the medulla's level.
    d = dist * (1.0 / thickness)
    return (medulla * (1.0 - np.exp(-d)) + (cortex - medulla) * d * np.exp(1.0 - d)) * mask


def _soft_tissue(polygons: Sequence[tuple[int, np.ndarray]], size: int, margin: float) -> np.ndarray:
    """uint8 silhouette of the hand and forearm, built around the bones: a thick band along each finger
    (extended past the fingertip), the palm around metacarpals and carpals, the forearm around radius and ulna."""
    by_name = {CLASSES[c]: p.astype(np.float64) for c, p in polygons}
    sil = np.zeros((size, size), np.uint8)
    # Soft tissue around a bone is about as thick as the bone is wide: measure a proximal phalanx.
    width = min(cv2.minAreaRect(by_name["finger-9"].astype(np.float32))[1])
    pad = max(1, int(round(margin * width)))
    for names, *_ in RAYS:
        centres = np.array([by_name[n].mean(0) for n in names])
        # Run the band to the distal phalanx's tip; the line's round cap adds the fingertip pad.
        d = centres[-1] - centres[-2]
        d /= max(float(np.hypot(*d)), 1e-6)
        tip = centres[-1] + d * float(((by_name[names[-1]] - centres[-1]) @ d).max())
        chain = np.vstack([centres, tip]).round().astype(np.int32)
        cv2.polylines(sil, [chain], False, 1, thickness=int(round(width + 2 * pad)), lineType=cv2.LINE_8)
    groups = (
        [n for names, *_ in RAYS for n in names[:1]] + list(CARPAL_SHAPES),
        ["Radius", "Ulna", "Scaphoid", "Lunate", "Triquetrum", "Pisiform"],
    )
    for group in groups:
        hull = cv2.convexHull(np.concatenate([by_name[n] for n in group]).round().astype(np.int32))
        cv2.fillConvexPoly(sil, hull, 1)
        cv2.polylines(sil, [hull], True, 1, thickness=2 * pad)
    return sil


def render(polygons: Sequence[tuple[int, np.ndarray]], size: int, rng: np.random.Generator,
           cfg: SynthConfig) -> np.ndarray:
    """uint8 (size, size) radiograph look-alike drawn from class_masks(polygons): soft tissue plus bones whose
    densities add up where they overlap, mapped through an exposure curve, with noise, blur and contrast."""
    r = cfg.render
    px = size / REF_SIZE
    masks = class_masks(polygons, (size, size))
    texture = 1.0 + np.float32(r.texture) * _smooth_noise(rng, size, r.texture_cells)

    attenuation = np.zeros((size, size), np.float32)
    for cls, pts in polygons:
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0) + 1
        mask = masks[cls, y0:y1, x0:x1]
        scale = _jit(rng, r.bone_jitter)
        dens = _bone_density(mask, (int(x0), int(y0), int(x1), int(y1)), size, rng.uniform(*r.cortex) * scale,
                             rng.uniform(*r.medulla) * scale, r.cortex_frac)
        attenuation[y0:y1, x0:x1] += dens.astype(np.float32) * texture[y0:y1, x0:x1]

    sil = _soft_tissue(polygons, size, r.tissue_margin)
    depth = cv2.distanceTransform(sil, cv2.DIST_L2, 3)
    ramp = max(r.tissue_ramp_px * px, 1.0)
    # A limb is roughly a cylinder: the path through it grows like the square root of the depth below the skin.
    attenuation += rng.uniform(*r.tissue) * np.sqrt(np.minimum(depth * (1.0 / ramp), 1.0))

    # Film response: overlapping bones add up but saturate, as attenuation does.
    image = 1.0 - np.exp(-rng.uniform(*r.gain) * attenuation)
    gradient = np.linspace(-r.background_gradient, r.background_gradient, size, dtype=np.float32)
    tilt = rng.uniform(-1.0, 1.0, 2).astype(np.float32)
    background = np.float32(rng.uniform(*r.background)) + tilt[0] * gradient[None, :] + tilt[1] * gradient[:, None]
    image = background + (1.0 - background) * image
    image = np.clip(image, 0.0, 1.0) ** np.float32(rng.uniform(*r.gamma))
    image += rng.standard_normal(image.shape, np.float32) * np.float32(rng.uniform(*r.noise))
    sigma = rng.uniform(*r.blur_px) * px
    if sigma > 0.3:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    # Display window: dark background to just above the brightest bone overlap, so overlaps stay visible.
    lo, hi = np.percentile(image[::4, ::4], (0.5, 99.95))
    hi = lo + (hi - lo) * rng.uniform(*r.headroom)
    image = (image - lo) * np.float32(1.0 / max(hi - lo, 1e-3))
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------------------
# Writing the dataset layout
# ----------------------------------------------------------------------------------------------------------
# Real file names are millisecond timestamps of mid-2022. Each seed (modulo 1000) and each patient gets its own
# slot, so names never clash within a set and differ between seeds.
_TIME_BASE_MS = 1_661_130_000_000
_TIME_SEED_STEP_MS = 100_000_000
_TIME_PATIENT_STEP_MS = 250_000
_STREAM_IMAGE, _STREAM_NAMES = 0, 1
_HANDS = (("R", False), ("L", True))  # the right hand is taken first, as in the real ID001


def _rng(seed: int, patient: int, stream: int, hand: int = 0) -> np.random.Generator:
    """One independent generator per (seed, patient, hand): an image never depends on how many are made."""
    return np.random.default_rng([seed, patient, hand, stream])


def _image_stems(seed: int, patient: int, suffixed: bool) -> list[str]:
    rng = _rng(seed, patient, _STREAM_NAMES)
    t = _TIME_BASE_MS + (seed % 1000) * _TIME_SEED_STEP_MS + patient * _TIME_PATIENT_STEP_MS
    t_right = t + int(rng.integers(0, 100_000))
    t_left = t_right + int(rng.integers(30_000, 120_000))  # the second hand about a minute later
    return [f"image{ms}" + (f"_{tag}" if suffixed else "") for ms, (tag, _) in zip((t_right, t_left), _HANDS)]


def _annotation_doc(polygons: Sequence[tuple[int, np.ndarray]], stem: str, patient: str,
                   rng: np.random.Generator) -> dict:
    """The JSON document of one image, in the real files' shape (including their misleading metadata)."""
    def hex_id(n: int) -> str:
        return "".join(f"{int(v):x}" for v in rng.integers(0, 16, n))

    annotations = [{"id": f"{int(rng.integers(1, 100))}-{hex_id(32)}", "type": "poly_seg", "attributes": {},
                    "points": pts.tolist(), "label": CLASSES[cls]} for cls, pts in polygons]
    return {
        "annotations": annotations,
        "attributes": {},
        "file_id": hex_id(24),
        "filename": f"{stem}.jpg",
        "parent_path": f"/{patient}",
        "last_modifier_id": "synthetic",
        "metadata": {"height": 3060, "width": 3060},
        "last_workers": {},
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise CascadeError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def generate(out: str | Path, patients: int, test_patients: int = 0, size: int = 512, seed: int = 0,
             cfg: SynthConfig | None = None, progress: Callable[[int, int], None] | None = None,
             workers: int | None = None, overwrite: bool = False) -> dict:
    """Write `patients` labelled patients under out/train and `test_patients` unlabelled ones under out/test
    (IDs continue after train), two hands each, on `workers` threads (default: one per core). Same arguments
    -> byte-identical files, whatever the number of workers. The files are written into a sibling folder that
    replaces `out` only when complete; an `out` that is not empty is refused unless overwrite."""
    if patients < 0 or test_patients < 0:
        raise CascadeError("patient counts must be >= 0")
    if seed < 0:
        raise CascadeError(f"seed must be >= 0, got {seed}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise CascadeError(f"image size must be within {MIN_SIZE}..{MAX_SIZE}, got {size}")
    cfg = cfg or load_synth_config()
    root, out = Path(out), Path(out).resolve()  # resolved: "." has no name and no sibling
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        # adding to an existing set would mix sizes and seeds, and overwrite images of the same name
        raise DataError(out, "output folder exists and is not empty (choose a new or empty folder)")
    jobs = []
    for number in range(1, patients + test_patients + 1):
        split = "train" if number <= patients else "test"
        stems = _image_stems(seed, number, suffixed=(split == "train" and number == 1))
        jobs += [(split, number, hand, stem, left) for hand, (stem, (_, left)) in enumerate(zip(stems, _HANDS))]

    def write_image(job) -> str:
        split, number, hand, stem, left = job
        patient = f"ID{number:03d}"
        rng = _rng(seed, number, _STREAM_IMAGE, hand)  # one stream per image: any order gives the same files
        try:
            polygons = make_hand(rng, size, left, cfg)
        except CascadeError as exc:  # name the image; nothing is left in `out`
            raise DataError(out / split / IMAGE_DIR / patient / f"{stem}.png", f"not generated ({exc}); "
                                                                               f"nothing was written") from None
        _write_png(tmp / split / IMAGE_DIR / patient / f"{stem}.png", render(polygons, size, rng, cfg))
        if split == "train":
            doc = _annotation_doc(polygons, stem, patient, rng)
            write_text(tmp / split / LABEL_DIR / patient / f"{stem}.json", json.dumps(doc))
        return split

    counts = {"train": 0, "test": 0}
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:  # bounded_map waits for its threads before an error leaves it: none writes into tmp after the rmtree
        for done, split in enumerate(bounded_map(write_image, jobs, workers or os.cpu_count() or 1), 1):
            counts[split] += 1
            if progress is not None:
                progress(done, len(jobs))
        if out.is_dir() and not any(out.iterdir()):
            for part in tmp.iterdir():  # into the folder itself: it may be a mount point or someone's cwd
                shutil.move(part, out / part.name)  # a mount point is another file system: rename may not do
        else:
            replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"root": str(root), "train": str(root / "train"), "test": str(root / "test"), "size": size,
            "seed": seed, "patients": patients, "test_patients": test_patients,
            "train_images": counts["train"], "test_images": counts["test"]}
