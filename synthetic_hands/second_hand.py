"""Part of a second hand at the film's edge: image content only, never labelled.

The data format labels one hand per image (29 classes, one polygon each); the other hand of a bilateral film
is not in the labels, so its bones must not carry the hand's classes. It is drawn beside the labelled hand,
the other side, lying parallel at the same magnification, reaching a little way into the film from the edge
with the most room, and it is left out when it would touch a labelled bone."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from convert.classes import CLASSES
from convert.masks import class_masks

from .anatomy import FOREARM_SHAPES, REF_SIZE
from .film import Film
from .settings import SynthConfig
from .shapes import _clip_to_box, _direction, _hand_outlines, _pose_to_image, _sample_pose

Bone = tuple[np.ndarray, np.ndarray]  # (full-size uint8 mask, int32 points)


def second_hand(rng: np.random.Generator, size: int, polygons: Sequence[tuple[int, np.ndarray]], film: Film,
                labelled: np.ndarray, cfg: SynthConfig) -> tuple[list[Bone], list[tuple[int, np.ndarray]]] | None:
    """The visible bones of another hand as (mask, points) pairs, and its whole outline (for its soft tissue);
    None when there is no room for it. `labelled`: the union of the labelled hand's masks."""
    x0, y0, x1, y1 = film.field
    main = np.concatenate([p for _, p in polygons]).astype(np.float64)
    across = _direction(film.rotation_deg)[1]  # the hand's sideways axis in the image
    corners = np.array([[x0, y0], [x1 - 1, y0], [x0, y1 - 1], [x1 - 1, y1 - 1]], np.float64)
    margin = cfg.pose.margin_frac * size
    # The side (along `across`) with the most film beyond the labelled hand's bones.
    rooms = [((corners @ (s * across)).max() - (main @ (s * across)).max(), s) for s in (1.0, -1.0)]
    room, side = max(rooms)
    reach = min(rng.uniform(*cfg.film.second_hand_reach_frac) * size, room - margin)
    if reach < 1:
        return None
    pose = _sample_pose(rng, not film.left, False, cfg.pose)
    pose.rotation_deg, pose.scale = film.rotation_deg, film.scale
    outlines, distal = _hand_outlines(rng, pose, cfg.pose, float(np.sqrt(2.0) * REF_SIZE / pose.scale))
    placed = _pose_to_image(outlines, distal, pose, size)
    # Beside the labelled hand: level with it along the hand's axis, its inner side `reach` into the film.
    along = _direction(film.rotation_deg)[0]
    both = np.concatenate(list(placed.values()))
    d = side * across
    hand = np.concatenate([placed[n] for n in distal])
    main_hand = np.concatenate([p for c, p in polygons if CLASSES[c] not in FOREARM_SHAPES]).astype(np.float64)
    shift = ((corners @ d).max() - reach - (both @ d).min()) * d + (main_hand.mean(0) - hand.mean(0)) @ along * along
    bones: list[Bone] = []
    outline = []
    for name in CLASSES:
        pts = placed[name] + shift
        outline.append((CLASSES.index(name), np.round(pts).astype(np.int32)))
        visible = np.round(_clip_to_box(pts, (x0, y0, x1 - 1, y1 - 1))).astype(np.int32)
        if len(visible) < 3 or len(np.unique(visible, axis=0)) < 3:
            continue
        mask = class_masks([(0, visible)], (size, size), num_classes=1)[0]
        if (mask & labelled).any():
            return None
        if mask.any():
            bones.append((mask, visible))
    return (bones, outline) if bones else None
