"""An X-ray look-alike drawn from exactly the masks the polygons rasterise to, so that image and labels agree."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from convert.classes import CLASSES
from convert.masks import class_masks

from .anatomy import CARPAL_SHAPES, RAYS, REF_SIZE
from .film import Film, film_stream
from .marks import draw_marks
from .second_hand import second_hand
from .settings import RenderConfig, SynthConfig
from .shapes import jitter


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Zero-mean, unit-scale noise varying over about size / cells pixels (bone texture, uneven exposure)."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC)


def _bone_density(mask: np.ndarray, box: tuple[int, int, int, int], field: tuple[int, int, int, int], cortex: float,
                  medulla: float, cortex_frac: float) -> np.ndarray:
    """Projected density of one bone: bright cortical rim fading into a darker medulla, from the distance to
    the bone's edge. Edges on the border of the exposed field (x0, y0, x1, y1 exclusive; the image unless
    collimated) are not bone edges, so the mask is extended there."""
    x0, y0, x1, y1 = box
    h, w = mask.shape
    pad = min(h, w) // 2 + 2  # beyond half the bone's width, the far side is nearer than the fake edge
    at = (y0 == field[1], y1 == field[3], x0 == field[0], x1 == field[2])  # top, bottom, left, right
    sides = [pad if cut else 1 for cut in at]
    padded = cv2.copyMakeBorder(mask, *sides, cv2.BORDER_CONSTANT, value=0)
    # Replicate the mask across the sides that touch the image border.
    t, b, l, r = sides
    inner = padded[t:t + h, l:l + w]
    if at[0]:
        padded[:t, l:l + w] = inner[:1]
    if at[1]:
        padded[t + h:, l:l + w] = inner[-1:]
    if at[2]:
        padded[:, :l] = padded[:, l:l + 1]
    if at[3]:
        padded[:, l + w:] = padded[:, l + w - 1:l + w]
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, 3)[t:t + h, l:l + w]
    thickness = max(cortex_frac * float(dist.max()), 0.7)
    # A bone is a shell of cortex around a lighter medulla: the projected density rises from the edge to a
    # peak about one cortical thickness in (the bright rim), then falls to the medulla's level.
    d = dist * (1.0 / thickness)
    return (medulla * (1.0 - np.exp(-d)) + (cortex - medulla) * d * np.exp(1.0 - d)) * mask


def _soft_tissue(polygons: Sequence[tuple[int, np.ndarray]], size: int, margin: float) -> np.ndarray:
    """uint8 silhouette of the hand and forearm, built around the bones: a thick band along each finger
    (extended past the fingertip), the palm around metacarpals and carpals, the forearm around radius and ulna.
    Carpals not yet ossified (a child's hand) are simply left out of the palm."""
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
        hull = cv2.convexHull(np.concatenate([by_name[n] for n in group if n in by_name]).round().astype(np.int32))
        cv2.fillConvexPoly(sil, hull, 1)
        cv2.polylines(sil, [hull], True, 1, thickness=2 * pad)
    return sil


def _add_bones(attenuation: np.ndarray, bones: Sequence[tuple[np.ndarray, np.ndarray]],
               field: tuple[int, int, int, int], rng: np.random.Generator, r: RenderConfig, texture: np.ndarray,
               density: float) -> None:
    """Add each (full-size mask, points) bone's projected density to attenuation, in place."""
    for full_mask, pts in bones:
        x0, y0 = pts.min(0)
        x1, y1 = pts.max(0) + 1
        mask = full_mask[y0:y1, x0:x1]
        scale = jitter(rng, r.bone_jitter) * density
        dens = _bone_density(mask, (int(x0), int(y0), int(x1), int(y1)), field, rng.uniform(*r.cortex) * scale,
                             rng.uniform(*r.medulla) * scale, r.cortex_frac)
        attenuation[y0:y1, x0:x1] += dens.astype(np.float32) * texture[y0:y1, x0:x1]


def render(polygons: Sequence[tuple[int, np.ndarray]], size: int, rng: np.random.Generator,
           cfg: SynthConfig, film: Film | None = None) -> np.ndarray:
    """uint8 (size, size) radiograph look-alike drawn from class_masks(polygons): soft tissue plus bones whose
    densities add up where they overlap, mapped through an exposure curve, with noise, blur and contrast; then
    the film's own marks (config `film`: collimator bands outside film.field, burnt-in letters, a logo, part of
    a second hand), none of them over a labelled bone. The film's draws come from their own stream."""
    r, f = cfg.render, cfg.film
    px = size / REF_SIZE
    field = film.field if film is not None else (0, 0, size, size)
    film_rng = film_stream(rng)
    density = float(film_rng.uniform(*f.bone_density))  # osteopenic to dense: 1.0 leaves every value as it was
    masks = class_masks(polygons, (size, size))
    texture = 1.0 + np.float32(r.texture) * _smooth_noise(rng, size, r.texture_cells)

    attenuation = np.zeros((size, size), np.float32)
    _add_bones(attenuation, [(masks[cls], pts) for cls, pts in polygons], field, rng, r, texture, density)

    sil = _soft_tissue(polygons, size, r.tissue_margin)
    if film_rng.random() < f.second_hand_prob and film is not None:
        other = second_hand(film_rng, size, polygons, film, masks.any(0).astype(np.uint8), cfg)
        if other is not None:
            # Image content only: its bones are not the labelled hand's classes (one hand per image).
            bones, outline = other
            _add_bones(attenuation, bones, field, film_rng, r, texture, density)
            sil = np.maximum(sil, _soft_tissue(outline, size, r.tissue_margin))
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
    draw_marks(image, film_rng, field, sil, f)
    return np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8)
