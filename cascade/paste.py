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
from plumbing.values import shorten


@dataclass(frozen=True)
class PastePlan:
    """Which classes stage 2 replaces inside the region, the probability threshold of each, and which of them
    keep only their largest blob (None: not said, the checkpoint's setting applies)."""

    classes: tuple[int, ...]
    thresholds: dict[int, float]
    largest: tuple[int, ...] | None = None
    source: str = field(default="paste plan", compare=False)  # where it came from, for errors

    @classmethod
    def of_checkpoint(cls, stage2) -> "PastePlan":
        """A stage 2 model's own plan: its paste classes at its trained thresholds, each kept to its largest blob
        if the checkpoint says so."""
        thresholds = {c: float(t) for c, t in zip(stage2.train_classes, stage2.thresholds)}
        return cls(tuple(stage2.paste_classes), thresholds,
                   tuple(stage2.paste_classes) if stage2.largest_component else ())

    def with_defaults(self, checkpoint: "PastePlan") -> "PastePlan":
        """This plan (from `cascade evaluate`) picks the classes; what it does not say, a class's threshold or
        which classes keep their largest blob, comes from the checkpoint's own plan."""
        largest = checkpoint.largest if self.largest is None else self.largest
        return PastePlan(self.classes, {**checkpoint.thresholds, **self.thresholds}, largest, self.source)

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
        except FileNotFoundError:
            raise DataError(path, "paste file not found (it is written by `cascade evaluate`)") from None
        except IsADirectoryError:
            raise DataError(path, "is a folder, not a paste file") from None
        except (ValueError, OSError) as exc:
            raise DataError(path, f"not a paste file (not JSON: {type(exc).__name__})") from None
        if not isinstance(doc, dict) or "paste_classes" not in doc:
            raise DataError(path, "not a paste file (expected JSON with a 'paste_classes' list of class names)")
        classes = _class_list(doc["paste_classes"], "paste_classes", path)
        thresholds = doc.get("thresholds") or {}
        if not isinstance(thresholds, dict):
            raise DataError(path, "thresholds: expected a mapping of class name to probability")
        _class_list(list(thresholds), "thresholds", path)
        if not all(type(t) in (int, float) and 0.0 <= t <= 1.0 for t in thresholds.values()):
            raise DataError(path, "thresholds must be probabilities within 0..1")
        largest = doc.get("largest_component")
        largest = None if largest is None else _class_list(largest, "largest_component", path)
        return cls(classes, {CLASS_INDEX[name]: float(t) for name, t in thresholds.items()}, largest, str(path))


def _class_list(value, key: str, path) -> tuple[int, ...]:
    """A paste file's list of class names -> class indices; anything else is one line naming the file."""
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise DataError(path, f"{key}: expected a list of class names, got {shorten(json.dumps(value), 60)}")
    unknown = [n for n in value if n not in CLASS_INDEX]
    if unknown:
        raise DataError(path, f"unknown class name(s) {', '.join(shorten(n, 40) for n in unknown[:5])}")
    return tuple(CLASS_INDEX[n] for n in value)


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
