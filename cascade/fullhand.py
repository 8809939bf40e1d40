"""A full-hand UNet: the stage 2 trainer run on whole, downscaled images (configs/fullhand_cpu.yaml), writing a
submission like any other full-hand model. The demo uses it as the baseline the cascade is pasted over."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from convert.carpal_region import Region
from convert.classes import NUM_CLASSES
from convert.images import read_image
from convert.submission import encode_masks, write_submission
from plumbing.errors import CascadeError


def predict_whole_images(checkpoint: str | Path, images: Sequence[str | Path], out: str | Path,
                         device: str | None = None, batch: int = 4) -> Path:
    """Each image seen whole by the checkpoint's network; each trained class thresholded at the checkpoint's
    threshold (a class it was not trained on stays empty) -> a submission CSV, written atomically."""
    from stage2_segment.predict import Stage2Model

    model = Stage2Model(checkpoint, device=device)
    if model.needs_prior:  # before any image is read
        raise CascadeError(f"{checkpoint}: a stage 2 model that sees a full-hand prediction cannot be the "
                           "full-hand model itself")
    rows: dict[str, list[str]] = {}
    paths = [Path(p) for p in images]
    for start in range(0, len(paths), batch):
        chunk = [read_image(p) for p in paths[start:start + batch]]
        whole = [Region((0, 0, im.shape[1], im.shape[0]), "whole image") for im in chunk]
        for path, image, probs in zip(paths[start:start + batch], chunk, model.predict(chunk, whole)):
            masks = np.zeros((NUM_CLASSES, *image.shape[:2]), np.uint8)
            for j, c in enumerate(model.train_classes):
                masks[c] = probs[j] >= model.thresholds[j]
            rows[path.name] = encode_masks(masks)
    write_submission(out, rows)
    return Path(out)
