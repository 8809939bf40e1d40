"""Stage 2's probabilities pasted over stage 1's masks inside the carpal region, and which classes to paste."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from convert.carpal_region import Region
from convert.classes import CLASS_INDEX, CLASSES
from plumbing.atomic import write_text
from plumbing.errors import DataError


@dataclass(frozen=True)
class PastePlan:
    """Which classes stage 2 replaces inside the region, the probability threshold of each, and which of them
    keep only their largest blob (None: not said, the checkpoint's setting applies)."""

    classes: tuple[int, ...]
    thresholds: dict[int, float]
    largest: tuple[int, ...] | None = None
    source: str = field(default="paste plan", compare=False)  # where it came from, for errors

    def check(self, train_classes: Sequence[int], stage2: str | Path) -> None:
        """Every planned class must be a channel of the stage 2 model; checked before any image is predicted."""
        missing = [CLASSES[c] for c in self.classes if c not in set(train_classes)]
        if missing:
            raise DataError(self.source, f"pastes {', '.join(missing)}, which stage 2 ({stage2}) was not trained on")

    def save(self, path: str | Path, note: str = "") -> None:
        doc = {"paste_classes": [CLASSES[c] for c in self.classes],
               "thresholds": {CLASSES[c]: float(t) for c, t in sorted(self.thresholds.items())},
               **({} if self.largest is None else {"largest_component": [CLASSES[c] for c in self.largest]}),
               "note": note}
        write_text(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PastePlan":
        try:
            doc = json.loads(Path(path).read_text())
            names = [*doc["paste_classes"], *doc.get("thresholds", {}), *(doc.get("largest_component") or [])]
        except FileNotFoundError:
            raise DataError(path, "paste file not found (it is written by `cascade evaluate`)") from None
        except (ValueError, KeyError, TypeError):
            raise DataError(path, "not a paste file (expected JSON with a 'paste_classes' list of class "
                                  "names)") from None
        unknown = [str(n) for n in names if n not in CLASS_INDEX]
        if unknown:
            raise DataError(path, f"unknown class name(s) {', '.join(unknown)}")
        thresholds = doc.get("thresholds", {})
        if not all(type(t) in (int, float) and 0.0 <= t <= 1.0 for t in thresholds.values()):
            raise DataError(path, "thresholds must be probabilities within 0..1")
        thresholds = {CLASS_INDEX[name]: float(t) for name, t in thresholds.items()}
        largest = doc.get("largest_component")
        largest = None if largest is None else tuple(CLASS_INDEX[name] for name in largest)
        return cls(tuple(CLASS_INDEX[name] for name in doc["paste_classes"]), thresholds, largest, str(path))


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 8-connected blob of a binary mask (each bone is one piece: stray pixels are noise)."""
    grey = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8, copy=False)
    x, y, w, h = cv2.boundingRect(grey)  # label only the box around the mask's pixels: a bone is a small part
    if w == 0:
        return mask
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grey[y:y + h, x:x + w], connectivity=8)
    if count <= 2:  # background and at most one blob
        return mask
    kept = np.zeros(mask.shape, bool)
    kept[y:y + h, x:x + w] = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return kept


def paste(masks: np.ndarray, probs: np.ndarray, region: Region, train_classes: Sequence[int],
          plan: PastePlan) -> np.ndarray:
    """In place: for each planned class, stage 2's thresholded channel (its largest blob, for the plan's
    `largest` classes) replaces stage 1's mask inside the region; stage 1 stays outside it and for every other
    class. Returns masks."""
    ys, xs = region.slices
    height, width = ys.stop - ys.start, xs.stop - xs.start
    if probs.shape[1:] != (height, width):
        raise ValueError(f"stage 2 output {probs.shape[1:]} does not match region {region.box}")
    channel = {c: j for j, c in enumerate(train_classes)}
    for c in plan.classes:
        if c not in channel:
            raise DataError(plan.source, f"class {CLASSES[c]} is not one stage 2 was trained on")
        inside = probs[channel[c]] >= plan.thresholds.get(c, 0.5)
        masks[c, ys, xs] = largest_component(inside) if c in (plan.largest or ()) else inside
    return masks
