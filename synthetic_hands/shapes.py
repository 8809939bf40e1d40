"""Bone outlines: a random pose of the anatomy table, placed in the image and annotated as polygons."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convert.classes import CLASS_INDEX, CLASSES
from plumbing.errors import CascadeError

from .anatomy import BEND_CENTRES, CAPS, CARPAL_SHAPES, FOREARM_SHAPES, JOINT_GAP, PIVOT_XY, RAYS, REF_SIZE
from .film import Film, Layout, collimated_field, film_rotation, film_stream, place_anywhere, sample_layout
from .settings import PointsConfig, PoseConfig, SynthConfig

OUTLINE_POINTS = 40  # points along each side of a long bone's outline (per its table length for a forearm)


def _smooth01(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _long_bone(length: float, w_base: float, w_shaft: float, w_head: float, cap_base: float, cap_head: float,
               flare: float = 0.3, head_shift: float = 0.0, head_tilt_deg: float = 0.0,
               n: int = OUTLINE_POINTS) -> np.ndarray:
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


def jitter(rng: np.random.Generator, sd: float) -> float:
    """A multiplicative size jitter, kept positive."""
    return float(np.clip(1.0 + rng.normal(0.0, sd), 0.7, 1.3))


def _hand_outlines(rng: np.random.Generator, pose: _Pose, p: PoseConfig,
                   reach: float | None = None) -> tuple[dict[str, np.ndarray], set[str]]:
    """Outlines of all 29 bones in the hand frame before the wrist bend, and which of them are distal to
    the wrist (everything but the forearm); `reach` lengthens the forearm bones to at least that length."""
    out: dict[str, np.ndarray] = {}
    for name, (cx, cy, a, b, ang, expo) in CARPAL_SHAPES.items():
        wobble = np.stack([rng.normal(0.0, p.wobble, 2), rng.uniform(0.0, 2 * np.pi, 2)], 1)
        centre = (cx + rng.normal(0.0, p.carpal_jitter_px), cy + rng.normal(0.0, p.carpal_jitter_px))
        s = jitter(rng, p.size_jitter)
        out[name] = _place(_blob(a * s, b * s, expo, wobble), centre, ang + rng.normal(0.0, p.joint_deg))
    for ray, (names, base, angle, bones) in enumerate(RAYS):
        # The middle finger (ray 2) stays put; the others fan out by the spread; the thumb moves more freely.
        angle += pose.spread_deg * (ray - 2) + (rng.normal(0.0, p.thumb_deg) if ray == 0 else 0.0)
        origin = np.asarray(base, np.float64)
        s_ray = jitter(rng, p.size_jitter)
        for k, (name, (length, wb, ws, wh)) in enumerate(zip(names, bones)):
            kind = "metacarpal" if k == 0 else "distal" if k == len(bones) - 1 else "phalanx"
            if k:
                angle += rng.normal(0.0, p.joint_deg)
            sl, sw = s_ray * jitter(rng, p.size_jitter / 2), s_ray * jitter(rng, p.size_jitter / 2)
            local = _long_bone(length * sl, wb * sw, ws * sw, wh * sw, *CAPS[kind])
            out[name] = _place(local, origin, angle)
            origin = origin + _direction(angle)[0] * (length * sl + JOINT_GAP)
    distal = set(out)
    for name, (x, y_end, length, ws, wd, flare, shift, tilt, cap) in FOREARM_SHAPES.items():
        s = jitter(rng, p.size_jitter)
        n = OUTLINE_POINTS
        if reach is not None and reach > length:
            # A hand placed anywhere on the film still has its forearm leave it; as many points per length.
            n, length = int(np.ceil(OUTLINE_POINTS * reach / length)), reach
        local = _long_bone(length, ws * s, ws * s, wd * s, 0.1, cap, flare=flare / length,
                           head_shift=shift * s, head_tilt_deg=tilt, n=n)
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


def _clip_to_box(pts: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    """Sutherland-Hodgman clipping of a closed polygon to the box x0, y0, x1, y1 (inclusive)."""
    x0, y0, x1, y1 = box
    for axis, bound, keep_below in ((0, x0, False), (0, x1, True), (1, y0, False), (1, y1, True)):
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


def _annotate(pts: np.ndarray, size: int, rng: np.random.Generator, cfg: PointsConfig,
              field: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """Outline in image pixels -> int32 polygon points the way an annotator clicked them: clipped to the
    exposed field (x0, y0, x1, y1 exclusive; default the image), resampled along the boundary with a spacing
    drawn per bone (dense tracing to sparse clicks)."""
    fx0, fy0, fx1, fy1 = field or (0, 0, size, size)
    first, last = np.array([fx0, fy0], np.float64), np.array([fx1 - 1, fy1 - 1], np.float64)
    pts = _clip_to_box(pts, (*first, *last))
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
    out = _distinct(np.clip(np.round(res), first, last).astype(np.int32))
    if len(np.unique(out, axis=0)) < 3:
        # A bone of a pixel or two (tiny images): fall back to the whole outline, then to a small triangle.
        out = _distinct(np.clip(np.round(pts), first, last).astype(np.int32))
        if len(np.unique(out, axis=0)) < 3:
            x, y = np.clip(np.round(pts.mean(0)), first + 1, last - 1).astype(np.int32)
            out = np.array([[x - 1, y + 1], [x + 1, y + 1], [x, y - 1]], np.int32)
    return out


def make_hand(rng: np.random.Generator, size: int, left: bool, cfg: SynthConfig,
              bent: bool | None = None) -> list[tuple[int, np.ndarray]]:
    """29 (class index, int32 (N, 2) x, y points) pairs in class order for a size x size image; `bent` forces
    the wrist's pose (None: drawn with pose.bent_wrist_prob). A film with a child's hand (film.child_prob)
    leaves out the carpals not yet ossified. See place_hand for the film the hand lies on."""
    return place_hand(rng, size, left, cfg, bent)[0]


def _film_pose(rng: np.random.Generator, layout: Layout, pose: _Pose, cfg: SynthConfig) -> float | None:
    """Turn and size the pose for its film (in place); the forearm length that still leaves the film."""
    if not layout.moves:
        return None
    pose.rotation_deg = film_rotation(rng, layout, cfg.film, pose.rotation_deg)
    if layout.far:
        pose.scale = float(rng.uniform(*cfg.film.far_scale))
    # The film's diagonal in hand-frame units: from anywhere on the film, a forearm this long runs out of it.
    return float(np.sqrt(2.0) * REF_SIZE / pose.scale)


def _with_forearm(placed: dict[str, np.ndarray], hand: np.ndarray, frac: float) -> np.ndarray:
    """The hand's points and those of the forearm within `frac` of the hand's length from the wrist."""
    wrist = np.concatenate([placed[n] for n in CARPAL_SHAPES]).mean(0)
    reach = np.hypot(*(hand - wrist).T).max() * frac
    arm = np.concatenate([placed[n] for n in FOREARM_SHAPES])
    return np.vstack([hand, arm[np.hypot(*(arm - wrist).T) <= reach]])


def place_hand(rng: np.random.Generator, size: int, left: bool, cfg: SynthConfig,
               bent: bool | None = None) -> tuple[list[tuple[int, np.ndarray]], Film]:
    """make_hand's polygons and the Film they lie on, for render.

    Poses that would push a finger or carpal bone out of the image are drawn again; the forearm is meant to
    run off the film (the bottom edge, unless the film turns or shrinks the hand: config `film`) and is clipped
    to it, or to the collimated field. The film's choices come from their own stream (film.film_stream)."""
    if size < 16:
        raise CascadeError(f"image size {size} is too small for a hand (use 128 or more)")
    margin = cfg.pose.margin_frac * size
    film_rng = film_stream(rng)
    layout = sample_layout(film_rng, cfg.film)
    # Drawn once, outside the retries: bent hands are shorter and fit more often, and redrawing the flag
    # with the rest would tilt the share of bent wrists above bent_wrist_prob.
    # The draw is made even when `bent` is forced, so the rest of the hand comes from the same stream.
    drawn = bool(rng.random() < cfg.pose.bent_wrist_prob)
    bent = drawn if bent is None else bool(bent)
    for _ in range(max(1, cfg.pose.max_tries)):
        pose = _sample_pose(rng, left, bent, cfg.pose)
        reach = _film_pose(film_rng, layout, pose, cfg)
        outlines, distal = _hand_outlines(rng, pose, cfg.pose, reach)
        placed = _pose_to_image(outlines, distal, pose, size)
        hand = np.concatenate([placed[n] for n in distal])
        if layout.moves:
            # Anywhere the hand and the forearm's distal ends (which reach past the carpals) fit.
            shift = place_anywhere(film_rng, _with_forearm(placed, hand, cfg.film.forearm_visible_frac), size, margin)
            if shift is None:
                continue
            placed = {n: p + shift for n, p in placed.items()}
            hand = hand + shift
        if hand.min() >= margin and hand.max() <= size - 1 - margin:
            break
    field = (0, 0, size, size)
    if layout.collimated:
        # A band may cut the forearm, never the hand nor the forearm next to the wrist.
        keep = _with_forearm(placed, hand, cfg.film.collimation_forearm_frac)
        field = collimated_field(film_rng, keep, size, margin, cfg.film)
    # Every bone is annotated, so a child's hand is its adult hand without the missing carpals.
    polygons = [(CLASS_INDEX[name], _annotate(placed[name], size, rng, cfg.points, field)) for name in CLASSES]
    missing = {CLASS_INDEX[name] for name in layout.missing}
    film = Film(field, layout.missing, left, pose.rotation_deg, pose.scale)
    return [(c, p) for c, p in polygons if c not in missing], film
