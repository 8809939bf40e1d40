"""`cascade train-stage1`: train an ultralytics segmentation model on a dataset written by `cascade convert`."""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from convert.carpal_region import fit_region_prior
from convert.classes import CLASSES, REGION_CLASS, REGION_CLASS_ID
from convert.images import IMAGE_SUFFIXES
from convert.masks import class_masks
from convert.yolo import REGION_KEY
from plumbing.errors import DataError
from plumbing.run_lock import run_lock
from plumbing.values import MAX_EPOCHS
from plumbing.terminal import is_terminal

from .config import Stage1Config, resolve_model
from .threads import all_threads_while_training, threads_kept
from .safe_load import check_stage1_file
from .ultralytics_offline import amp_check_without_download, font_without_download
from .weights import embed_meta

PRIOR_SIDE = 256  # label polygons are rasterised this small to measure the region prior: a box needs no detail


@dataclass
class Stage1Run:
    run_dir: Path
    best: Path
    last: Path


def check_yolo_data(data: str | Path) -> Path:
    """The converted dataset's data.yaml, after checking what training needs; problems are one-line errors. The
    29 bones, optionally followed by the carpal region (class 29, which sets written before it lack)."""
    data = Path(data)
    yaml_path = data / "data.yaml" if data.is_dir() else data
    if not yaml_path.is_file():
        raise DataError(yaml_path, "no data.yaml (write the dataset with `cascade convert`)")
    try:
        doc = yaml.safe_load(yaml_path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError):
        raise DataError(yaml_path, "not valid YAML") from None
    if not isinstance(doc, dict):
        raise DataError(yaml_path, "expected a mapping (names, train, val), as `cascade convert` writes")
    names = doc.get("names")
    if isinstance(names, dict):  # ultralytics' {id: name} form
        names = [names[k] for k in sorted(names)] if all(isinstance(k, int) for k in names) else None
    if isinstance(names, list) and names == [*CLASSES, REGION_CLASS] and not isinstance(doc.get(REGION_KEY), dict):
        raise DataError(yaml_path, f"has the {REGION_CLASS} class but no `{REGION_KEY}:` rule (write the dataset "
                                   "with `cascade convert`)")
    if names != list(CLASSES) and names != [*CLASSES, REGION_CLASS]:
        count = len(names) if isinstance(names, list) else 0
        first = next((i for i, (n, c) in enumerate(zip(names or [], CLASSES)) if n != c), None)
        detail = (f" (class {first} is {names[first]!r}, expected {CLASSES[first]!r})"
                  if count == len(CLASSES) and first is not None else "")
        raise DataError(yaml_path, f"has {count} class names, expected the {len(CLASSES)} hand-bone classes in "
                                   f"order{detail} (and optionally {REGION_CLASS})")
    root = Path(doc.get("path") or yaml_path.parent)
    if not root.is_dir():
        raise DataError(yaml_path, f"its path {root} does not exist (was the set moved?); without a `path:` line "
                                   "the splits are looked for beside data.yaml")
    for split in ("train", "val"):
        if not isinstance(doc.get(split), str):
            raise DataError(yaml_path, f"no '{split}' split folder")
        folder = root / doc[split]
        if not folder.is_dir() or not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise DataError(yaml_path, f"the {split} split {folder} has no images")
    return yaml_path


def _label_masks(yaml_path: Path):
    """Ground-truth masks of the training split, rebuilt small from the YOLO label files."""
    root = yaml_path.parent
    aspect = {}
    index = root / "index.csv"
    if index.is_file():
        with open(index) as f:
            aspect = {Path(r["file"]).stem: int(r["height"]) / int(r["width"]) for r in csv.DictReader(f)}
    for label in sorted((root / "labels" / "train").glob("*.txt")):
        h, w = round(PRIOR_SIDE * aspect.get(label.stem, 1.0)), PRIOR_SIDE
        polygons = []
        for n, line in enumerate(label.read_text().splitlines(), 1):
            values = line.split()
            if len(values) >= 7:
                try:
                    cls, xy = int(values[0]), np.array(values[1:], float).reshape(-1, 2) * (w, h) - 0.5
                except ValueError:
                    cls = -1
                if not 0 <= cls <= REGION_CLASS_ID:
                    raise DataError(label, f"line {n}: not a class id (0-{REGION_CLASS_ID}) and x y pairs")
                if cls != REGION_CLASS_ID:  # the region is measured from the bones, like the rule does
                    polygons.append((cls, xy))
        yield class_masks(polygons, (h, w))


DEVICE = re.compile(r"^(cpu|mps|cuda(:\d+)?|-1|\d+(,\d+)*)$")


def check_ultralytics_args(args: dict, where: str) -> None:
    """ultralytics' own type and range checks, and the device, before anything is trained or written: a typo
    must not cost an epoch, nor print ultralytics' multi-line help."""
    from ultralytics.cfg import get_cfg

    try:
        get_cfg(overrides={k: v for k, v in args.items() if k != "device"})
    except (TypeError, ValueError, SyntaxError) as exc:
        raise DataError(where, str(exc).strip().splitlines()[0]) from None
    epochs = args.get("epochs")
    if isinstance(epochs, (int, float)) and not 1 <= epochs <= MAX_EPOCHS:
        raise DataError(where, f"epochs {epochs!r}: need 1 <= epochs <= {MAX_EPOCHS} (more is a typo, not a schedule)")
    imgsz = args.get("imgsz")  # ultralytics checks it only once training has set up (and written its folder)
    if imgsz is not None and (type(imgsz) is not int or imgsz < 32):
        raise DataError(where, f"imgsz {imgsz!r}: expected a whole number of pixels, at least 32")
    device = args.get("device")
    if device is None:
        return
    text = str(device).replace(" ", "").lower()
    if not DEVICE.match(text):
        raise DataError(where, f"device {device!r}: expected cpu, a GPU index (0) or indices (0,1,2,3)")
    import torch

    if text == "mps" and not torch.backends.mps.is_available():
        raise DataError(where, f"device {device!r}: this build of torch or this machine has no MPS (use device=cpu)")
    if text not in ("cpu", "mps") and not torch.cuda.is_available():
        raise DataError(where, f"device {device!r}: no CUDA GPU here (use device=cpu)")


@contextlib.contextmanager
def bars_for(stream):
    """ultralytics redraws its progress bars with carriage returns and ANSI erase codes, a frame per batch. Off
    a terminal (a log file, a pipe) its bars run in their non-interactive mode (as on CI): each writes only its
    finished line, so an epoch is one line, as in stage 2's log. In this process only: a multi-GPU run's
    workers, which ultralytics starts itself, still draw."""
    import ultralytics.utils.tqdm as bars

    if is_terminal(stream):
        yield
        return
    real = bars.is_noninteractive_console
    bars.is_noninteractive_console = lambda: True
    try:
        yield
    finally:
        bars.is_noninteractive_console = real


def check_settings(cfg: Stage1Config) -> str:
    """What can be checked of the settings without data (ultralytics' arguments, the device, the model name or
    file), before anything is read or written; returns the model file."""
    check_ultralytics_args(cfg.ultralytics, "stage 1 settings")
    model_file = resolve_model(cfg.model)
    # every .pt ultralytics would unpickle (it does so with weights_only=False): the model, `pretrained=`, `resume=`
    for weights in (model_file, cfg.ultralytics.get("pretrained"), cfg.ultralytics.get("resume")):
        if isinstance(weights, str) and weights.endswith(".pt") and Path(weights).is_file():
            check_stage1_file(weights)
    return model_file


def exported_region_rule(yaml_path: Path) -> dict | None:
    """The region rule a converted set's class-29 lines follow (its `cascade_region:`); None: no region class."""
    doc = yaml.safe_load(yaml_path.read_text()) or {}
    names = doc.get("names")
    count = len(names) if isinstance(names, (dict, list)) else 0
    return dict(doc[REGION_KEY]) if count == len(CLASSES) + 1 else None


def train_stage1(data: str | Path, cfg: Stage1Config) -> Stage1Run:
    """Train; the weights carry our config, the region prior measured on the training labels and, when the set
    has the region class, the rule its boxes follow (the detected box holds that rule's margin)."""
    yaml_path = check_yolo_data(data)
    exported = exported_region_rule(yaml_path)
    model_file = check_settings(cfg)
    args = dict(cfg.ultralytics)
    prior = fit_region_prior(_label_masks(yaml_path), cfg.region)  # before training: a bad label fails at once
    font_without_download()
    from ultralytics import YOLO

    try:
        model = YOLO(model_file, task="segment")
    except Exception as exc:  # ultralytics raises many types for a file that is not its model
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise DataError(model_file, f"not a loadable YOLO model ({reason})") from None
    model.add_callback("on_pretrain_routine_start", amp_check_without_download)
    if args.get("project"):  # ultralytics puts a relative project under its own settings' runs_dir, not here
        args["project"] = str(Path(args["project"]).resolve())
    # one writer per run folder (ultralytics would share project/name between two runs with exist_ok)
    with run_lock(Path(args.get("project") or "runs/segment") / str(args.get("name") or "train")), \
            threads_kept() as threads, bars_for(sys.stdout):
        model.add_callback("on_train_start", all_threads_while_training(threads))
        model.train(data=str(yaml_path), **args)
    run_dir = Path(model.trainer.save_dir)
    resolved = dataclasses.replace(cfg, region=dataclasses.replace(cfg.region, prior=prior))
    meta = json.loads(json.dumps(dataclasses.asdict(resolved)))  # plain lists and dicts, for YAML and torch
    if exported is not None:
        meta[REGION_KEY] = json.loads(json.dumps(exported))
    (run_dir / "cascade_stage1.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    best, last = run_dir / "weights" / "best.pt", run_dir / "weights" / "last.pt"
    for weights in (best, last):
        if weights.is_file():
            embed_meta(weights, meta)
    return Stage1Run(run_dir, best if best.is_file() else last, last)
