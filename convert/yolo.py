"""JSON polygons -> a YOLO-seg dataset that ultralytics trains on directly.

Layout written under `out`: images/{train,val}/, labels/{train,val}/ (one line per polygon:
`class x1 y1 x2 y2 ...`, coordinates normalised by the image size; a polygon reaching past the edge is cut
to [0, 1]; after the 29 bones, one line of class 29, the carpal region: see region_line), data.yaml with the
splits, the 29 + 1 names and the region rule the region lines follow (`cascade_region`; no `path`: ultralytics
then looks beside data.yaml, so the folder can be moved),
folds.json (the patient split every later stage reuses) and index.csv (which source image each file came
from, with its native size).
"""

from __future__ import annotations

import csv
import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import yaml

from plumbing.atomic import partial_dir, replace_dir, write_text
from .carpal_region import RULE_CLASSES, RegionConfig, carpal_region
from .classes import CLASSES, REGION_CLASS, REGION_CLASS_ID
from .dataset import EDGE_TOLERANCE, Clip, Item, Sample, scan, try_load_sample
from plumbing.errors import DataError, Problem
from plumbing.parallel import bounded_map
from .folds import FOLDS_FILE, make_folds, save_folds
from .images import AS_STORED, to_gray_uint8
from .masks import class_masks

SPLITS = ("train", "val")
# How the region is drawn for a -seg model, whose every label line must be a polygon (ultralytics strips all
# segments of an image if one line is a bare box). "ellipse": the ellipse inscribed in the box; ultralytics takes
# a training box from the polygon's extent after its rotation augment, and an ellipse's extent turns with it
# (a rectangle's corners would swell the box by up to cos + sin of the angle, 1.3x at 25 degrees, at random).
# "box": the rectangle itself.
REGION_SHAPES = ("ellipse", "box")
REGION_KEY = "cascade_region"  # data.yaml's record of the rule the region lines follow
ELLIPSE_VERTICES = 32  # a multiple of 4: vertices at 0, 90, 180, 270 degrees touch the box's four sides exactly


@dataclass
class ConvertResult:
    out: Path
    counts: dict[str, int]
    problems: list[Problem] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)  # polygons cut to their image (within the edge tolerance)
    oriented: list[str] = field(default_factory=list)  # images with an EXIF orientation tag, written as stored


def yolo_name(item: Item) -> str:
    """File stem in the YOLO set; prefixed by the patient because image names need not be unique across patients."""
    return f"{item.patient}__{item.image.stem}"


def label_lines(sample: Sample) -> list[str]:
    """One `class x1 y1 ...` line per polygon; the pixel centre (x + 0.5) / w maps edges to 0 and 1 exactly."""
    h, w = sample.hw
    lines = []
    for cls, points in sample.polygons:
        norm = np.empty(points.shape, np.float64)
        norm[:, 0] = (points[:, 0] + 0.5) / w
        norm[:, 1] = (points[:, 1] + 0.5) / h
        if norm.min() < 0.0 or norm.max() > 1.0:  # reached past the edge (convert.dataset.EDGE_TOLERANCE)
            norm = clip_to_unit_square(norm)
            if len(norm) < 3:
                continue
        lines.append(f"{cls} " + " ".join(f"{v:.6f}" for v in norm.ravel()))
    return lines


def region_line(sample: Sample, rule: RegionConfig, shape: str = REGION_SHAPES[0]) -> str:
    """The carpal region as a YOLO-seg line of class 29: THE region rule (convert.carpal_region) on the sample's
    label masks at native size, as stage 2's training crops it, drawn as `shape`; the polygon's extent is the
    rule's box exactly (pixel edges x0 and x1 map to x0 / w and x1 / w)."""
    h, w = sample.hw
    read = [(c, points) for c, points in sample.polygons if c in RULE_CLASSES]
    x0, y0, x1, y1 = carpal_region(class_masks(read, sample.hw), rule).box
    if shape == "box":
        xy = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], np.float64)
    elif shape == "ellipse":
        angle = np.arange(ELLIPSE_VERTICES) * (2 * np.pi / ELLIPSE_VERTICES)
        xy = np.stack([(x0 + x1 + (x1 - x0) * np.cos(angle)) / 2, (y0 + y1 + (y1 - y0) * np.sin(angle)) / 2], 1)
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2  # the four extreme vertices exactly (cos 90 degrees is not 0 in floats)
        xy[::ELLIPSE_VERTICES // 4] = [(x1, cy), (cx, y1), (x0, cy), (cx, y0)]
    else:
        raise ValueError(f"region shape {shape!r}: expected one of {', '.join(REGION_SHAPES)}")
    norm = np.clip(xy / (w, h), 0.0, 1.0)
    return f"{REGION_CLASS_ID} " + " ".join(f"{v:.6f}" for v in norm.ravel())


def clip_to_unit_square(points: np.ndarray) -> np.ndarray:
    """The polygon cut by the square [0, 1] x [0, 1] (Sutherland-Hodgman, one side at a time). Clamping each
    vertex instead would move the polygon's edges next to it, not cut them."""
    poly = [tuple(p) for p in points]
    for axis in (0, 1):
        for bound, keep in ((0.0, np.greater_equal), (1.0, np.less_equal)):
            out = []
            for i, cur in enumerate(poly):
                prev = poly[i - 1]
                cur_in, prev_in = keep(cur[axis], bound), keep(prev[axis], bound)
                if cur_in != prev_in:  # the edge crosses the boundary: add the crossing point
                    t = (bound - prev[axis]) / (cur[axis] - prev[axis])
                    cross = [prev[0] + t * (cur[0] - prev[0]), prev[1] + t * (cur[1] - prev[1])]
                    cross[axis] = bound
                    out.append(tuple(cross))
                if cur_in:
                    out.append(cur)
            poly = out
            if not poly:
                return np.zeros((0, 2))
    return np.clip(np.array(poly, np.float64), 0.0, 1.0)  # rounding noise only


def _resized(image: np.ndarray, imgsz: int | None) -> np.ndarray:
    h, w = image.shape[:2]
    if not imgsz or max(h, w) <= imgsz:
        return image
    scale = imgsz / max(h, w)
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def _write_one(sample: Sample, split_dir: dict[str, Path], split: str, imgsz: int | None,
               region: RegionConfig | None, region_shape: str) -> tuple[str, int, int]:
    stem = yolo_name(sample.item)
    src = sample.item.image
    copy = imgsz is None and sample.image.dtype == np.uint8 and sample.orientation == AS_STORED
    name = stem + (src.suffix.lower() if copy else ".png")
    target = split_dir["images"] / split / name
    try:
        if copy:
            # Already what YOLO reads: copy the encoded file rather than re-encoding a 2048 PNG. Not with an EXIF
            # orientation tag: ultralytics' reader (cv2.imread) would turn the pixels away from the labels.
            shutil.copyfile(src, target)
        else:
            image = _resized(to_gray_uint8(sample.image), imgsz)
            ok, buf = cv2.imencode(".png", image)
            if not ok:
                raise DataError(src, "could not encode the converted image")
            target.write_bytes(buf.tobytes())
        target = split_dir["labels"] / split / f"{stem}.txt"
        lines = label_lines(sample) + ([region_line(sample, region, region_shape)] if region is not None else [])
        target.write_text("\n".join(lines) + "\n")
    except OSError as exc:  # a full disk: the output is at fault, not the image being copied (sendfile names it)
        raise DataError(target, f"cannot write ({exc.strerror or exc}); nothing was written to the output") from None
    h, w = sample.hw
    return name, h, w


def convert_to_yolo(
    data: str | Path,
    out: str | Path,
    folds: int = 5,
    fold: int = 0,
    imgsz: int | None = None,
    seed: int = 0,
    skip_bad: bool = False,
    overwrite: bool = False,
    workers: int = os.cpu_count() or 1,
    progress: Callable[[int, int], None] | None = None,
    edge_tolerance: float = EDGE_TOLERANCE,
    region: RegionConfig | None = RegionConfig(),
    region_shape: str = REGION_SHAPES[0],
) -> ConvertResult:
    """Convert a labelled `DCM/` + `outputs_json/` folder; fold `fold` of `folds` patient groups becomes val.
    `region`: the rule whose carpal region is written as class 29 for stage 1 to detect (stage 1's own region
    settings, so that its detections are the boxes its fallback rule would give); None writes the 29 bones only.

    By default any problem in the data aborts the conversion and leaves nothing behind; with skip_bad the bad
    images are dropped and listed in the result. The output appears only when complete.
    """
    data, out = Path(data), Path(out).resolve()
    if region_shape not in REGION_SHAPES:
        raise DataError("--region-shape", f"region shape {region_shape!r}: expected one of "
                                          f"{', '.join(REGION_SHAPES)}")
    _check_destination(data, out, folds, fold, overwrite)
    listing = scan(data)
    if not listing.items:
        raise DataError(data, "no image has an annotation")
    # The split depends on every patient present, including those of bad items, so dropping a bad image
    # never moves other patients between folds.
    assignment = make_folds([i.patient for i in listing.items], folds, seed)
    result = ConvertResult(out, dict.fromkeys(SPLITS, 0), list(listing.problems))
    if result.problems and not skip_bad:
        raise _stop(result.problems)
    tmp = partial_dir(out)  # and the partial folders of killed conversions removed
    c = _Converting(_empty_split_dirs(tmp), assignment, fold, imgsz, skip_bad, edge_tolerance, result, region,
                    region_shape)
    try:
        _write_items(c, listing.items, workers, progress)
        for split, n in result.counts.items():
            if n == 0:
                raise DataError(data, f"the {split} split is empty (fold {fold} of {folds}, "
                                      f"{len(assignment)} patients); use fewer folds or more patients")
        _write_meta(tmp, c, folds, seed)
        replace_dir(tmp, out)
    except DataError as exc:
        if not exc.path.startswith(str(tmp)):
            raise
        # the partial folder is gone with this error: name the file as the output would have held it
        raise DataError(str(out) + exc.path[len(str(tmp)):], exc.reason) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


@dataclass
class _Converting:
    """What the steps of one convert_to_yolo call share: its settings, and the result built so far."""
    dirs: dict[str, Path]  # "images" / "labels" -> its folder in the partial output
    assignment: dict[str, int]  # patient -> fold
    fold: int
    imgsz: int | None
    skip_bad: bool
    edge_tolerance: float
    result: ConvertResult
    region: RegionConfig | None  # the rule of the region lines (class 29); None: none written
    region_shape: str
    rows: list = field(default_factory=list)  # index.csv's rows


def _check_destination(data: Path, out: Path, folds: int, fold: int, overwrite: bool) -> None:
    if not 0 <= fold < folds:
        raise DataError("--fold", f"fold {fold} is not in 0..{folds - 1}")
    source = data.resolve()
    if source == out or out in source.parents or source in out.parents:  # --overwrite would delete the data
        raise DataError(out, f"holds or lies inside the data being converted ({data}); write the YOLO set elsewhere")
    if out.exists() and not out.is_dir():
        raise DataError(out, "is a file; expected a folder to write the YOLO set into")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise DataError(out, "output folder exists and is not empty (pass --overwrite to replace it)")


def _empty_split_dirs(tmp: Path) -> dict[str, Path]:
    shutil.rmtree(tmp, ignore_errors=True)
    dirs = {kind: tmp / kind for kind in ("images", "labels")}
    for kind in dirs.values():
        for split in SPLITS:
            (kind / split).mkdir(parents=True)
    return dirs


def _write_items(c: _Converting, items: list[Item], workers: int, progress: Callable[[int, int], None] | None) -> None:
    """Every item converted on worker threads, recorded in the order given."""
    for done, (item, written, item_problems) in enumerate(bounded_map(lambda i: _convert_one(c, i), items, workers), 1):
        if item_problems:
            c.result.problems.extend(item_problems)
            if not c.skip_bad:
                raise _stop(item_problems)
        else:
            _record(c, item, *written)
        if progress:
            progress(done, len(items))


def _convert_one(c: _Converting, item: Item):
    sample, item_problems = try_load_sample(item, c.edge_tolerance)
    if item_problems:
        return item, None, item_problems
    split = "val" if c.assignment[item.patient] == c.fold else "train"
    written = _write_one(sample, c.dirs, split, c.imgsz, c.region, c.region_shape)
    return item, (split, *written, sample.clips, sample.orientation), []


def _record(c: _Converting, item: Item, split: str, name: str, h: int, w: int, clips: list[Clip],
            orientation) -> None:
    c.result.clips.extend(clips)
    if orientation != AS_STORED:
        c.result.oriented.append(str(item.image))
    c.result.counts[split] += 1
    c.rows.append((split, f"images/{split}/{name}", item.patient, c.assignment[item.patient],
                   str(item.image.resolve()), h, w))


def _stop(problems: list[Problem]) -> DataError:
    return DataError(problems[0].path, problems[0].reason + _more(problems))


def _more(problems: list[Problem]) -> str:
    extra = len(problems) - 1
    return (f" (+{extra} more problem{'s' if extra > 1 else ''}; run `cascade check-data` for the list, "
            "or --skip-bad to drop bad images)") if extra else " (or pass --skip-bad to drop bad images)"


def _write_meta(tmp: Path, c: _Converting, folds: int, seed: int) -> None:
    names = list(CLASSES) + ([REGION_CLASS] if c.region is not None else [])
    doc = {"train": "images/train", "val": "images/val", "nc": len(names), "names": dict(enumerate(names))}
    if c.region is not None:  # what stage 1 needs to turn a detected box back into the rule's (its margin)
        doc[REGION_KEY] = {"margin": c.region.margin, "min_side": c.region.min_side, "square": c.region.square,
                           "min_carpals": c.region.min_carpals, "shape": c.region_shape}
    write_text(tmp / "data.yaml", yaml.safe_dump(doc, sort_keys=False))
    save_folds(tmp / FOLDS_FILE, c.assignment, folds, seed)
    rows = c.rows
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(("split", "file", "patient", "fold", "source", "height", "width"))
    writer.writerows(sorted(rows))
    write_text(tmp / "index.csv", buf.getvalue())
