"""The full-hand prediction as stage 2's extra input: which classes, cut with exactly the crop's geometry, and
the corruptions training applies so the network learns to correct a full-hand model, not to copy it.

As in nnU-Net's cascade, the prior is one binary channel per chosen class beside the grey crop. Trained on
clean ground truth, a network would copy its prior; so the prior is the ground truth made wrong the ways
full-hand models are wrong: a bone missed, the overlapping pairs confused, boundaries too far in or out, a
small offset, and sometimes nothing at all (a weak stage 1 that found no bone).

A full-hand prediction that misses most carpals says nothing useful about them, and a network fed one leans on it
(measured: docs/benchmarks.md). So a prior holding fewer than `min_carpals` carpal bones is fed empty, in training
and at inference alike (`gated`): over a full-hand model that finds no carpals the prior model sees what it learnt
from its empty training priors, a crop alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from convert.carpal_region import RULE_CLASSES
from convert.classes import CARPAL_INDICES, CLASS_INDEX, CLASSES
from plumbing.values import check_pair, check_range, did_you_mean

from .geometry import Box, crop_padded

# named sets of prior classes; a list of class names also works
PRESETS = {
    "none": (),
    "carpals": CARPAL_INDICES,
    "neighbours": RULE_CLASSES,  # the carpals and the bones around them: metacarpals, radius, ulna
    "all": tuple(range(len(CLASSES))),
}
# the pairs whose labels overlap and that full-hand models confuse most (docs/earlier-work.md)
SWAP_PAIRS = ((CLASS_INDEX["Trapezium"], CLASS_INDEX["Trapezoid"]), (CLASS_INDEX["Triquetrum"], CLASS_INDEX["Pisiform"]))


@dataclass
class PriorConfig:
    """`classes: none` keeps the crop-only model. Probabilities are per training crop (drop, swap per class or
    pair); the validation prior is the same corruption with a fixed seed per image."""

    classes: str | list[str] = "none"      # none, carpals, neighbours (carpals + metacarpals + forearm), all, or names
    empty_prob: float = 0.5                # the whole prior empty: a full-hand model that found nothing here
    wrong_prob: float = 0.2                # mostly wrong: every channel moved far off (a region on the wrong bones)
    drop_prob: float = 0.3                 # per class: its mask missing (a bone the full-hand model did not find)
    swap_prob: float = 0.2                 # per overlapping pair: the two masks exchanged
    morph_prob: float = 0.5                # per class: grown, shrunk, opened or closed
    morph_radius: tuple[int, int] = (1, 4)  # pixels of the native image (real 2048 px films: 1-10)
    shift_px: int = 3                      # per class: moved up to this many native pixels each way
    file: str | None = None                # a submission of every training image (a base's out-of-fold predictions)
    file_share: float = 0.5                # with a file: share of training crops whose prior is the file's, as it is
    min_carpals: int = 5                   # fewer carpal bones in the prior -> fed empty (0: never); see `gate`

    def __post_init__(self):
        if isinstance(self.classes, str):
            if self.classes not in PRESETS:
                raise ValueError(f"classes: need one of {', '.join(PRESETS)} or a list of class names, "
                                 f"got {self.classes!r}")
        else:
            self.classes = [str(c) for c in self.classes]
            unknown = [c for c in self.classes if c not in CLASS_INDEX]
            if unknown:
                raise ValueError(f"classes: unknown class(es) {', '.join(unknown)}{did_you_mean(unknown[0], CLASS_INDEX)}")
            if len(set(self.classes)) != len(self.classes):
                raise ValueError("classes: a class is listed twice")
        if self.file is not None and not self.indices:
            raise ValueError("file: a prior file needs prior classes (classes: none sees no prior)")
        for key in ("empty_prob", "wrong_prob", "drop_prob", "swap_prob", "morph_prob", "file_share"):
            check_range(key, getattr(self, key), 0, 1)
        check_pair("morph_radius", self.morph_radius)
        check_range("morph_radius", self.morph_radius[0], 1)
        check_range("shift_px", self.shift_px, 0)
        check_range("min_carpals", self.min_carpals, 0, len(CARPAL_INDICES))

    @property
    def gate(self) -> int:
        """min_carpals, but never more than the prior's carpal classes (a gate no prior passes would empty all)."""
        return min(self.min_carpals, sum(c in CARPAL_INDICES for c in self.indices))

    @property
    def indices(self) -> list[int]:
        """The prior's classes (indices into CLASSES), in class order: channel j is CLASSES[indices[j]]."""
        if isinstance(self.classes, str):
            return list(PRESETS[self.classes])
        return sorted(CLASS_INDEX[c] for c in self.classes)


def cut_prior(full: np.ndarray, classes: Sequence[int], box: Box) -> np.ndarray:
    """(29, H, W) full-hand masks -> (len(classes), h, w) uint8 of box, zero where the box leaves the image: the
    same pixels the grey crop of box holds."""
    return crop_padded(np.asarray(full[list(classes)], np.uint8), box)


def gated(prior: np.ndarray, classes: Sequence[int], min_carpals: int) -> np.ndarray:
    """(P, h, w) prior of `classes` -> itself, or zeros when fewer than min_carpals of its carpal channels hold a
    pixel (the module's note). The input is not changed."""
    found = sum(1 for j, c in enumerate(classes) if c in CARPAL_INDICES and prior[j].any())
    return prior if found >= min_carpals else np.zeros_like(prior)


def corrupt(masks: np.ndarray, classes: Sequence[int], cfg: PriorConfig, rng: np.random.Generator) -> np.ndarray:
    """(P, h, w) {0,1} ground-truth masks of `classes` -> the same shape and classes, made wrong at random as a
    full-hand model would be (see the module's note). The input is not changed."""
    out = np.array(masks, np.uint8, copy=True)
    if rng.random() < cfg.empty_prob:
        return np.zeros_like(out)
    position = {c: j for j, c in enumerate(classes)}
    for a, b in SWAP_PAIRS:
        if a in position and b in position and rng.random() < cfg.swap_prob:
            out[[position[a], position[b]]] = out[[position[b], position[a]]]
    far = rng.random() < cfg.wrong_prob
    h, w = out.shape[-2:]
    for j in range(len(out)):
        if rng.random() < cfg.drop_prob:
            out[j] = 0
            continue
        if rng.random() < cfg.morph_prob:
            out[j] = _morph(out[j], int(rng.integers(cfg.morph_radius[0], cfg.morph_radius[1] + 1)),
                            int(rng.integers(4)))
        limit = max(h, w) // 3 if far else cfg.shift_px  # far: a third of the crop, onto other bones
        if limit:
            dx, dy = (int(v) for v in rng.integers(-limit, limit + 1, 2))
            out[j] = crop_padded(out[j], (-dx, -dy, w - dx, h - dy))  # moved by (dx, dy), zero coming in
    return out


def _morph(mask: np.ndarray, radius: int, kind: int) -> np.ndarray:
    """Grown (0), shrunk (1), opened (2) or closed (3) by a disc of the radius."""
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    op = (cv2.MORPH_DILATE, cv2.MORPH_ERODE, cv2.MORPH_OPEN, cv2.MORPH_CLOSE)[kind]
    return cv2.morphologyEx(mask, op, disc)
