"""`cascade demo`: the tool end to end on generated data, with every output kept in one folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from convert.check import check_dataset
from convert.config import CONFIG_DIR, load_config
from convert.dataset import iter_samples, scan
from convert.errors import CascadeError
from convert.folds import load_folds
from convert.masks import class_masks
from convert.submission import encode_masks, validate_submission, write_submission
from convert.synth import generate, load_synth_config
from convert.yolo import convert_to_yolo


@dataclass
class DemoConfig:
    patients: int = 16
    test_patients: int = 3
    size: int = 256
    seed: int = 0
    folds: int = 4
    fold: int = 0


def load_demo_config(path=None, overrides=()) -> DemoConfig:
    return load_config(DemoConfig, path or CONFIG_DIR / "demo.yaml", overrides)


def run_demo(out: str | Path, cfg: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """Generate -> check -> convert -> submission of the held-out fold's labels -> validate.

    The stages that learn (train-stage1 / train-stage2 / predict) join here as they land; until then the
    submission is the held-out ground truth, which exercises the RLE and validation path end to end.
    """
    out = Path(out)
    data = out / "data"
    generate(data, cfg.patients, cfg.test_patients, size=cfg.size, seed=cfg.seed, cfg=load_synth_config())
    echo(f"[1/4] generated {2 * cfg.patients} labelled + {2 * cfg.test_patients} test images in {data}")

    report = check_dataset(data / "train")
    if not report.ok:
        raise CascadeError(f"generated data failed its check: {report.problems[0]}")
    echo(f"[2/4] dataset check: {report.images} images, {report.patients} patients, no problems")

    yolo = convert_to_yolo(data / "train", out / "yolo", folds=cfg.folds, fold=cfg.fold, overwrite=True)
    echo(f"[3/4] YOLO-seg dataset: {yolo.counts['train']} train / {yolo.counts['val']} val images in {yolo.out}")

    folds, _ = load_folds(yolo.out / "folds.json")
    held_out = [i for i in scan(data / "train").items if folds[i.patient] == cfg.fold]
    encoded = {s.item.name: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(held_out)}
    submission = out / "reference_submission.csv"
    write_submission(submission, encoded)
    checked = validate_submission(submission, {s: (cfg.size, cfg.size) for s in encoded})
    if not checked.ok:
        raise CascadeError(f"{submission}: {checked.problems[0]}")
    echo(f"[4/4] reference submission of the {len(encoded)} held-out images (their labels), valid: {submission}")
    return {"data": data, "yolo": yolo.out, "submission": submission}
