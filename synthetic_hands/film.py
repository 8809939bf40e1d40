"""The film around the hand: which way up it lies, how large, where on the film, the collimated field and
how many carpals have ossified. Drawn once per image from its own random stream (see `film_stream`), so a
film whose effects are off or do not fire leaves every other draw of the image as it was."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .anatomy import OSSIFICATION_ORDER
from .settings import FilmConfig

HALF_TURN_DEG = 180.0


def film_stream(rng: np.random.Generator) -> np.random.Generator:
    """An independent stream for the film's draws. Spawning reads the seed, not the state: the image's own
    stream is not advanced, so its pose, outlines and rendering are drawn exactly as without film effects."""
    return rng.spawn(1)[0]


@dataclass(frozen=True)
class Film:
    """What place_hand decided about the film, for render to draw."""
    field: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the exposed field; the image if not collimated
    missing: tuple[str, ...] = ()      # carpals not yet ossified (a child's hand): neither drawn nor labelled
    left: bool = False                 # the labelled hand's side, global rotation and scale: a second hand
    rotation_deg: float = 0.0          # beside it is the other side, lying parallel at the same magnification
    scale: float = 1.0

    def collimated(self, size: int) -> bool:
        return self.field != (0, 0, size, size)


@dataclass(frozen=True)
class Layout:
    """The per-image film choices that move the hand (drawn before the pose, applied at each pose try)."""
    fingers_down: bool
    turned: bool
    far: bool
    collimated: bool
    missing: tuple[str, ...]

    @property
    def moves(self) -> bool:
        """The hand leaves its competition placement: it is placed anywhere on the film that holds it."""
        return self.fingers_down or self.turned or self.far


def sample_layout(rng: np.random.Generator, f: FilmConfig) -> Layout:
    down, turned, far, collimated, child = (bool(rng.random() < p) for p in (
        f.fingers_down_prob, f.turn_prob, f.far_prob, f.collimation_prob, f.child_prob))
    missing: tuple[str, ...] = ()
    if child:
        ossified = int(rng.integers(f.child_carpals[0], f.child_carpals[1] + 1))
        missing = OSSIFICATION_ORDER[ossified:]
    return Layout(down, turned, far, collimated, missing)


def film_rotation(rng: np.random.Generator, layout: Layout, f: FilmConfig, rotation_deg: float) -> float:
    """The hand's global rotation on this film: a turned hand draws its own, fingers down add a half turn."""
    if layout.turned:
        rotation_deg = float(rng.choice((-1.0, 1.0)) * rng.uniform(*f.turn_deg))
    return rotation_deg + (HALF_TURN_DEG if layout.fingers_down else 0.0)


def place_anywhere(rng: np.random.Generator, hand: np.ndarray, size: int, margin: float) -> np.ndarray | None:
    """A shift that puts the points `hand` anywhere on the film with `margin` to spare, drawn uniformly;
    None when they cannot fit."""
    lo = margin - hand.min(0)
    hi = size - 1 - margin - hand.max(0)
    if (lo > hi).any():
        return None
    return rng.uniform(lo, hi)


def collimated_field(rng: np.random.Generator, hand: np.ndarray, size: int, margin: float,
                     f: FilmConfig) -> tuple[int, int, int, int]:
    """The exposed field: each side cut by a band of drawn depth (at least one side), never reaching the
    points `hand` (the bones distal to the wrist) within `margin`; a side with no room keeps no band."""
    sides = rng.random(4) < f.collimation_side_prob
    sides[rng.integers(4)] = True
    depth = np.floor(rng.uniform(*f.collimation_frac, 4) * size)
    # Room on each side: left, top, right, bottom.
    room = np.floor(np.concatenate([hand.min(0) - margin, size - 1 - margin - hand.max(0)]))
    cut = np.where(sides, np.clip(np.minimum(depth, room), 0, None), 0).astype(int)
    return int(cut[0]), int(cut[1]), size - int(cut[2]), size - int(cut[3])
