"""Stage 2's probabilities pasted over stage 1's masks inside the carpal region, and which classes to paste."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from convert.atomic import write_text
from convert.classes import CLASS_INDEX, CLASSES
from convert.errors import DataError
from convert.region import Region


@dataclass(frozen=True)
class PastePlan:
    """Which classes stage 2 replaces inside the region, and the probability threshold of each."""

    classes: tuple[int, ...]
    thresholds: dict[int, float]

    def save(self, path: str | Path, note: str = "") -> None:
        doc = {"paste_classes": [CLASSES[c] for c in self.classes],
               "thresholds": {CLASSES[c]: float(t) for c, t in sorted(self.thresholds.items())},
               "note": note}
        write_text(path, json.dumps(doc, indent=1) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PastePlan":
        try:
            doc = json.loads(Path(path).read_text())
            classes = tuple(CLASS_INDEX[name] for name in doc["paste_classes"])
            thresholds = {CLASS_INDEX[name]: float(t) for name, t in doc.get("thresholds", {}).items()}
        except FileNotFoundError:
            raise DataError(path, "paste file not found (it is written by `cascade evaluate`)") from None
        except (ValueError, KeyError, TypeError):
            raise DataError(path, "not a paste file (expected JSON with a 'paste_classes' list of class names)") from None
        return cls(classes, thresholds)


def paste(masks: np.ndarray, probs: np.ndarray, region: Region, train_classes: Sequence[int],
          plan: PastePlan) -> np.ndarray:
    """In place: for each planned class, stage 2's thresholded channel replaces stage 1's mask inside the
    region; stage 1 stays outside it and for every other class. Returns masks."""
    ys, xs = region.slices
    height, width = ys.stop - ys.start, xs.stop - xs.start
    if probs.shape[1:] != (height, width):
        raise ValueError(f"stage 2 output {probs.shape[1:]} does not match region {region.box}")
    channel = {c: j for j, c in enumerate(train_classes)}
    for c in plan.classes:
        if c not in channel:
            raise DataError("paste plan", f"class {CLASSES[c]} is not one stage 2 was trained on")
        masks[c, ys, xs] = probs[channel[c]] >= plan.thresholds.get(c, 0.5)
    return masks
