"""What a film carries besides the patient: collimator bands outside the exposed field, a burnt-in side
letter or word, and a clinic's logo block, drawn on the display-scaled image (1.0 is white)."""

from __future__ import annotations

import string

import cv2
import numpy as np

from .settings import FilmConfig

FONT = cv2.FONT_HERSHEY_DUPLEX  # a plain sans-serif, close to the film printers' type


def _text_mask(text: str, height: int, stroke_frac: float) -> np.ndarray:
    """float32 coverage (0..1) of `text` about `height` px tall, on a tight canvas."""
    thickness = max(1, int(round(stroke_frac * height)))
    (w1, h1), _ = cv2.getTextSize(text, FONT, 1.0, thickness)
    scale = height / max(h1, 1)
    (w, h), base = cv2.getTextSize(text, FONT, scale, thickness)
    canvas = np.zeros((h + base + 2 * thickness, w + 2 * thickness), np.uint8)
    cv2.putText(canvas, text, (thickness, h + thickness), FONT, scale, 255, thickness, cv2.LINE_AA)
    return canvas.astype(np.float32) * (1.0 / 255.0)


def _free_spot(rng: np.random.Generator, occupied: np.ndarray, hw: tuple[int, int], field: tuple[int, int, int, int],
               tries: int) -> tuple[int, int] | None:
    """A random top-left corner (x, y) inside the field where an h x w mark touches nothing occupied."""
    h, w = hw
    x0, y0, x1, y1 = field
    if x1 - x0 <= w or y1 - y0 <= h:
        return None
    for _ in range(tries):
        x, y = int(rng.integers(x0, x1 - w)), int(rng.integers(y0, y1 - h))
        if not occupied[y:y + h, x:x + w].any():
            return x, y
    return None


def _paste(image: np.ndarray, occupied: np.ndarray, cover: np.ndarray, xy: tuple[int, int], level: float,
           clearance: int) -> None:
    """Blend `level` over image where cover says, and keep the spot (with clearance) from later marks."""
    x, y = xy
    h, w = cover.shape
    part = image[y:y + h, x:x + w]
    part += (level - part) * cover
    occupied[max(y - clearance, 0):y + h + clearance, max(x - clearance, 0):x + w + clearance] = True


def draw_marks(image: np.ndarray, rng: np.random.Generator, field: tuple[int, int, int, int], tissue: np.ndarray,
               f: FilmConfig) -> None:
    """Draw the film's marks into the float image, in place: bands outside `field`, then a letter and a logo
    in free spots of the field, clear of the soft tissue `tissue` (nonzero: hand or forearm)."""
    size = image.shape[0]
    x0, y0, x1, y1 = field
    if field != (0, 0, size, size):
        level = rng.uniform(*(f.collimation_bright if rng.random() < f.collimation_bright_prob else f.collimation_dark))
        outside = np.ones(image.shape, bool)
        outside[y0:y1, x0:x1] = False
        image[outside] = level
    clearance = int(round(f.mark_clearance_frac * size))
    occupied = cv2.dilate(tissue, np.ones((2 * clearance + 1,) * 2, np.uint8)) > 0 if clearance else tissue > 0
    if rng.random() < f.letter_prob:
        text = str(rng.choice(list(f.letters)))
        cover = _text_mask(text, max(1, int(round(rng.uniform(*f.letter_height_frac) * size))), f.letter_stroke_frac)
        spot = _free_spot(rng, occupied, cover.shape, field, f.mark_tries)
        if spot is not None:
            _paste(image, occupied, cover, spot, rng.uniform(*f.mark_level), clearance)
    if rng.random() < f.logo_prob:
        side = max(2, int(round(rng.uniform(*f.logo_frac) * size)))
        spot = _free_spot(rng, occupied, (side, side), field, f.mark_tries)
        if spot is not None:
            level = rng.uniform(*f.mark_level)
            _paste(image, occupied, np.ones((side, side), np.float32), spot, level, clearance)
            # The clinic's emblem: dark initials across the block.
            initials = "".join(rng.choice(list(string.ascii_uppercase), f.logo_letters))
            text = _text_mask(initials, side, f.letter_stroke_frac)
            text = cv2.resize(text, (side, max(1, side * text.shape[0] // max(text.shape[1], 1))),
                              interpolation=cv2.INTER_AREA)
            x, y = spot
            y += (side - text.shape[0]) // 2
            part = image[y:y + text.shape[0], x:x + side]
            part -= level * text[:part.shape[0]]
