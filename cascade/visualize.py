"""Look, not read: predicted outlines (and ground truth when labels exist) over the radiograph, region drawn."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from convert.carpal_region import Region
from convert.classes import NUM_CLASSES
from convert.images import to_gray_uint8
from plumbing.atomic import atomic_path, check_output
from plumbing.errors import DataError

# one hue per class, spread around the colour wheel so neighbouring bones differ
PALETTE = cv2.applyColorMap(np.uint8(np.arange(NUM_CLASSES) * 255 // (NUM_CLASSES - 1))[:, None],
                            cv2.COLORMAP_HSV)[:, 0].tolist()
TRUTH_COLOUR = (255, 255, 255)
REGION_COLOUR = (0, 220, 255)


def overlay(image: np.ndarray, masks: np.ndarray, truth: np.ndarray | None = None,
            region: Region | None = None, thickness: int | None = None) -> np.ndarray:
    """BGR picture: ground truth outlines in white (when given), predictions in class colours, region in yellow."""
    canvas = cv2.cvtColor(to_gray_uint8(image), cv2.COLOR_GRAY2BGR)
    t = thickness or max(1, round(max(canvas.shape[:2]) / 700))
    for layer, colours in ((truth, None), (masks, PALETTE)):
        if layer is None:
            continue
        for c in range(NUM_CLASSES):
            contours, _ = cv2.findContours(layer[c].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(canvas, contours, -1, TRUTH_COLOUR if colours is None else colours[c], t)
    if region is not None:
        x0, y0, x1, y1 = region.box
        cv2.rectangle(canvas, (x0, y0), (x1 - 1, y1 - 1), REGION_COLOUR, t + 1)
        cv2.putText(canvas, f"region: {region.source}", (x0, max(y0 - 4 * t, 12 * t)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * t, REGION_COLOUR, t)
    return canvas


def side_by_side(image: np.ndarray, stage1: np.ndarray, cascade: np.ndarray, region: Region,
                 truth: np.ndarray | None = None, panel: int = 512) -> np.ndarray:
    """The carpal region twice: stage 1 on the left, the cascade on the right, each `panel` pixels high."""
    ys, xs = region.slices
    crops = []
    for masks, label in ((stage1, "stage 1"), (cascade, "cascade")):
        sub = overlay(image[ys, xs], masks[:, ys, xs], None if truth is None else truth[:, ys, xs], thickness=1)
        scale = panel / sub.shape[0]
        sub = cv2.resize(sub, (max(1, round(sub.shape[1] * scale)), panel), interpolation=cv2.INTER_NEAREST)
        cv2.putText(sub, label, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, REGION_COLOUR, 2)
        crops.append(sub)
    return np.hstack([crops[0], np.full((panel, 4, 3), 255, np.uint8), crops[1]])


def save_png(path: str | Path, picture: np.ndarray) -> Path:
    ok, buf = cv2.imencode(".png", picture)
    if not ok:
        raise DataError(path, "could not encode the picture")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
    return Path(path)


def visualize_image(image_path: str | Path, out: str | Path, stage1: str | Path | None = None,
                    stage2: str | Path | None = None, labels: str | Path | None = None, device: str | None = None,
                    model=None) -> list[Path]:
    """Write OUT (overlay of the cascade, or of stage 1 alone) and, with stage 2, OUT's `_compare` side-by-side
    of stage 1 vs cascade on the carpal region. `model`, a loaded Cascade, replaces stage1 / stage2 / device when
    drawing several images."""
    from convert.dataset import parse_annotation
    from convert.images import read_image
    from convert.masks import class_masks

    from .pipeline import Cascade

    out = Path(out)
    inputs = (image_path, stage1, stage2, labels)
    check_output(out, inputs, suffix=".png")
    if stage2 is not None or (model is not None and model.stage2 is not None):
        check_output(_compare_path(out), inputs, suffix=".png")
    image = read_image(image_path)
    truth = None
    if labels is not None:
        polygons, problems = parse_annotation(labels, image.shape[:2], require_all=False)
        if problems:
            raise DataError(problems[0].path, problems[0].reason)
        truth = class_masks(polygons, image.shape[:2])
    model = model or Cascade(stage1, stage2, device=device)
    result = model.run([image])[0]
    first = result.full_masks.copy()
    final = model.final_masks(result)
    written = [save_png(out, overlay(image, final, truth, result.region))]
    if model.stage2 is not None:
        written.append(save_png(_compare_path(out), side_by_side(image, first, final, result.region, truth)))
    return written


def _compare_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_compare.png")
