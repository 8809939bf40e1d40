"""The dataset contract: `DCM/<patient>/<image>` paired with `outputs_json/<patient>/<image stem>.json`.

Everything a later stage reads about a labelled image goes through here: the pairing, the patient ID (from the
folder), the image size (from the decoded image, never from the JSON metadata) and validated polygons.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from .classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from plumbing.errors import DataError, Problem
from plumbing.parallel import bounded_map
from plumbing.values import shorten
from .images import AS_STORED, IMAGE_SUFFIXES, image_hw, is_broken_link, read_image_oriented

IMAGE_DIR = "DCM"
LABEL_DIR = "outputs_json"

Polygon = tuple[int, np.ndarray]  # (class index, (N, 2) int32 x, y points in source pixels)

# Annotators put points on, or a few pixels past, the border of a bone the film cuts (radius and ulna at the
# bottom, a finger tip at the top, a collimation edge). Points past the edge by at most this share of the
# image side (and never less than EDGE_TOLERANCE_MIN_PX) are read and the polygon is cut to the image; farther
# out they mean another image or another coordinate frame, and stay an error.
EDGE_TOLERANCE = 0.03
EDGE_TOLERANCE_MIN_PX = 2.0
MAX_EDGE_TOLERANCE = 0.25  # a wider band would accept polygons of another coordinate frame
LABEL_SHOWN = 43  # characters of an unknown label quoted in a message: enough to recognise it


@dataclass(frozen=True)
class Clip:
    """A polygon that reached past the image edge within the tolerance, and was cut to the image."""

    path: str
    what: str          # "annotation 26 ('Pisiform')"
    overshoot: float   # pixels past the edge, at the worst point
    tolerance: float   # pixels allowed for this image

    def __str__(self) -> str:
        return (f"{self.path}: {self.what}: cut to the image ({self.overshoot:g} px past the edge; "
                f"tolerance {self.tolerance:g} px)")


def edge_tolerance_px(hw: tuple[int, int], fraction: float = EDGE_TOLERANCE) -> float:
    """Pixels a point may lie past the edge of an image of size hw."""
    return max(EDGE_TOLERANCE_MIN_PX, fraction * max(hw))


def overshoot(points: np.ndarray, hw: tuple[int, int]) -> float:
    """How far (pixels) the farthest point lies past the image. Integer coordinates name pixels, so x == w
    (the far side of the last pixel) is on the border: 0."""
    h, w = hw
    past = max(-points[:, 0].min(), -points[:, 1].min(), points[:, 0].max() - w, points[:, 1].max() - h)
    return max(0.0, float(past))


def clip_summary(clips: Sequence[Clip]) -> str | None:
    """One line for every polygon cut to its image, or None when there was none."""
    if not clips:
        return None
    worst = max(clips, key=lambda c: c.overshoot)
    files = len({c.path for c in clips})
    return (f"clipped {len(clips)} polygon{'s' if len(clips) > 1 else ''} in {files} file{'s' if files > 1 else ''}"
            f" to the image (worst {worst.overshoot:g} px past the edge, in {worst.path}; "
            f"tolerance {worst.tolerance:g} px)")


@dataclass(frozen=True)
class Item:
    patient: str
    image: Path
    label: Path | None  # None for unlabelled (test) images

    @property
    def name(self) -> str:
        return self.image.name


@dataclass
class Sample:
    item: Item
    image: np.ndarray  # as decoded: grey or colour, 8 or 16 bit
    polygons: list[Polygon]  # points may lie past the edge within the tolerance: drawing cuts them (masks.py)
    clips: list[Clip] = field(default_factory=list)
    orientation: int = AS_STORED  # the file's EXIF orientation tag, ignored (convert.images)

    @property
    def hw(self) -> tuple[int, int]:
        return image_hw(self.image)


@dataclass
class Scan:
    items: list[Item]
    problems: list[Problem] = field(default_factory=list)

    @property
    def patients(self) -> list[str]:
        return sorted({item.patient for item in self.items})


def _files(folder: Path, suffixes: Sequence[str]) -> dict[tuple[str, str], Path]:
    """(patient, stem) -> path for files one level below folder."""
    found = {}
    for path in sorted(folder.glob("*/*")):
        if (path.is_file() or is_broken_link(path)) and path.suffix.lower() in suffixes:  # a broken link: reported
            found[(path.parent.name, path.stem)] = path
    return found


def scan(root: str | Path, labelled: bool = True, labels: str | Path | None = None) -> Scan:
    """Pair images with their JSON under root (root/outputs_json, or the `labels` folder of <patient>/<image>.json
    kept apart from the images). Pairing problems are returned, not raised."""
    root = Path(root)
    image_dir = root / IMAGE_DIR
    if not root.is_dir():
        raise DataError(root, "data folder not found" if not root.exists() else
                        f"is a file; expected a folder holding {IMAGE_DIR}/")
    if not image_dir.is_dir():
        raise DataError(root, f"no {IMAGE_DIR}/ folder (expected {IMAGE_DIR}/<patient>/<image>.png)")
    images = _files(image_dir, IMAGE_SUFFIXES)
    if not images:
        raise DataError(image_dir, "no images found (expected <patient>/<image>.png)")
    problems = [Problem(str(p), f"file directly in {IMAGE_DIR}/, not in a patient folder")
                for p in sorted(image_dir.iterdir()) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not labelled:
        return Scan([Item(k[0], p, None) for k, p in images.items()], problems)

    label_dir = root / LABEL_DIR if labels is None else Path(labels)
    if not label_dir.is_dir():
        raise (DataError(root, f"no {LABEL_DIR}/ folder beside {IMAGE_DIR}/") if labels is None else
               DataError(label_dir, "labels folder not found"))
    found = _files(label_dir, (".json",))
    shown = LABEL_DIR if labels is None else str(label_dir)
    items = []
    for key, path in images.items():
        if key in found:
            items.append(Item(key[0], path, found[key]))
        else:
            problems.append(Problem(str(path), f"no annotation {shown}/{key[0]}/{key[1]}.json"))
    for key, path in found.items():
        if key not in images:
            problems.append(Problem(str(path), f"annotation without an image in {IMAGE_DIR}/{key[0]}/"))
    return Scan(items, problems)


def _json_kind(value) -> str:
    """How JSON spells the type of a parsed value (bool before int: True is an int in Python)."""
    for kind, name in ((bool, "a boolean"), (str, "a string"), (int, "a number"), (float, "a number"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return "null"


def _points(value) -> tuple[np.ndarray | None, str | None]:
    """(N, 2) float64 points of an annotation's "points", or why they are not a list of [x, y] numbers."""
    if not isinstance(value, list) or not all(isinstance(p, list) and len(p) == 2 for p in value):
        return None, "points are not a list of [x, y] pairs"
    for j, pair in enumerate(value):
        for v in pair:
            # exact types: bool is an int subclass, and numpy would also turn "12" and true into numbers
            if type(v) is not int and type(v) is not float:
                return None, f"point {j} holds {json.dumps(v)[:20]}, not a number"
    try:
        points = np.array(value, dtype=np.float64).reshape(-1, 2)
    except OverflowError:  # an integer beyond float range
        return None, "a coordinate is too large to be a pixel position"
    if not np.isfinite(points).all():
        return None, "points hold NaN or infinity"
    return points, None


def _zero_area(points: np.ndarray) -> str | None:
    """Why an integer polygon encloses no area (all points equal, or all on one line), or None."""
    d = points[1:].astype(np.int64) - points[0]
    moved = np.flatnonzero(d.any(axis=1))
    if moved.size == 0:
        return f"all {len(points)} points are the same"
    a = d[moved[0]]
    if not (d[:, 0] * a[1] - d[:, 1] * a[0]).any():
        return "all points lie on one line"
    return None


def parse_annotation(path: str | Path, hw: tuple[int, int], require_all: bool = True,
                     edge_tolerance: float = EDGE_TOLERANCE,
                     clips: list[Clip] | None = None) -> tuple[list[Polygon], list[Problem]]:
    """Validated polygons of one JSON file for an image of size hw, and everything wrong with it.

    A polygon reaching past the edge by at most edge_tolerance (a share of the side, see edge_tolerance_px) is
    kept with its points as drawn, and recorded in clips when a list is given: every mask is drawn by
    cv2.fillPoly, which cuts it to the image, so its mask is the polygon cut to the image exactly (clamping
    the points instead would tilt the edges next to them).
    """
    where = str(path)
    annotations, why = _annotation_list(Path(path))
    if why:
        return [], [Problem(where, why)]
    allowed = edge_tolerance_px(hw, edge_tolerance)
    polygons: list[Polygon] = []
    problems: list[Problem] = []
    named: dict[int, int] = {}  # class -> its first annotation, valid or not
    for i, ann in enumerate(annotations):
        cls, tag, why = _annotation_class(ann, i, named)
        if why:
            problems.append(Problem(where, why))
            continue
        points, past, why = _polygon_on_image(ann.get("points"), hw, allowed)
        if past and clips is not None:
            clips.append(Clip(where, tag, round(past, 2), round(allowed, 2)))
        if why:
            problems.append(Problem(where, f"{tag}: {why}"))
        else:
            polygons.append((cls, points))
    if require_all:
        # a class whose polygon was invalid is already reported above, not again as missing
        missing = sorted(set(range(NUM_CLASSES)) - set(named))
        if missing:
            problems.append(Problem(where, f"missing classes: {', '.join(CLASSES[c] for c in missing)}"))
    return polygons, problems


def _annotation_list(path: Path) -> tuple[list, str | None]:
    """The file's "annotations" list, or why it holds none."""
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        if is_broken_link(path):
            return [], f"broken symbolic link (its target {os.readlink(path)} does not exist)"
        return [], "annotation file not found"
    except OSError as exc:
        if isinstance(exc, IsADirectoryError) or path.is_dir():
            return [], "is a folder, not an annotation JSON file"
        return [], f"cannot read the annotation ({exc.strerror or type(exc).__name__})"
    except RecursionError:
        return [], "not valid JSON (nested too deeply)"
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of over 4300 digits
        return [], f"not valid JSON ({exc.msg if hasattr(exc, 'msg') else exc})"
    annotations = doc.get("annotations") if isinstance(doc, dict) else None
    if not isinstance(annotations, list):
        return [], "no 'annotations' list"
    return annotations, None


def _annotation_class(ann, i: int, named: dict[int, int]) -> tuple[int | None, str | None, str | None]:
    """(class, the annotation's name in messages, None), or why annotation i names no class of its own.
    A known class's first annotation is recorded in named."""
    if not isinstance(ann, dict):
        return None, None, f"annotation {i} is {_json_kind(ann)}, not an object"
    if "label" not in ann:
        return None, None, f"annotation {i}: no label"
    label = ann["label"]
    tag = f"annotation {i} ({shorten(repr(label), LABEL_SHOWN)})"
    if not isinstance(label, str):
        return None, tag, f"{tag}: label is {_json_kind(label)}, not a class name"
    if label not in CLASS_INDEX:
        return None, tag, f"{tag}: unknown label"
    cls = CLASS_INDEX[label]
    if cls in named:
        # the format has exactly one polygon per class and image; a second one is not silently merged
        return None, tag, (f"{tag}: a second polygon for this class (annotation {named[cls]} is the first; "
                           "one per class)")
    named[cls] = i
    return cls, tag, None


def _polygon_on_image(value, hw: tuple[int, int], allowed: float) -> tuple[np.ndarray | None, float, str | None]:
    """(integer points as drawn, pixels past the edge when within `allowed` else 0, None), or why the
    annotation's "points" make no polygon on the image."""
    h, w = hw
    points, why = _points(value)
    if why:
        return None, 0.0, why
    if len(points) < 3:
        return None, 0.0, f"polygon has {len(points)} points, needs at least 3"
    past = overshoot(points, hw)
    if past > allowed:
        return None, 0.0, (f"points outside the {w}x{h} image "
                           f"(x {points[:, 0].min():g}..{points[:, 0].max():g}, "
                           f"y {points[:, 1].min():g}..{points[:, 1].max():g}; "
                           f"{past:g} px past the edge, tolerance {allowed:g} px)")
    if past == 0:
        # A vertex on the far edge (x == w) is still on the image's boundary: drawn on its last pixel.
        points[:, 0] = np.minimum(points[:, 0], w - 1)
        points[:, 1] = np.minimum(points[:, 1], h - 1)
    points = np.round(points).astype(np.int32)
    # judged on the pixels it would be drawn with, inside the image
    flat = _zero_area(np.clip(points, 0, (w - 1, h - 1)))
    if flat:
        return None, past, (f"polygon has zero area in the image ({flat})" if past else
                            f"polygon has zero area ({flat})")
    return points, past, None


def load_sample(item: Item, edge_tolerance: float = EDGE_TOLERANCE) -> Sample:
    """Decode the image and its validated polygons; any problem raises a DataError naming the file."""
    sample, problems = try_load_sample(item, edge_tolerance)
    if problems:
        first = problems[0]
        more = f" (+{len(problems) - 1} more problems)" if len(problems) > 1 else ""
        raise DataError(first.path, first.reason + more)
    return sample


def try_load_sample(item: Item, edge_tolerance: float = EDGE_TOLERANCE) -> tuple[Sample | None, list[Problem]]:
    try:
        image, orientation = read_image_oriented(item.image)
    except DataError as exc:
        return None, [Problem(exc.path, exc.reason)]
    if item.label is None:
        return Sample(item, image, [], orientation=orientation), []
    clips: list[Clip] = []
    polygons, problems = parse_annotation(item.label, image_hw(image), edge_tolerance=edge_tolerance, clips=clips)
    return (None if problems else Sample(item, image, polygons, clips, orientation)), problems


def iter_samples(items: Sequence[Item], workers: int = 4,
                 on_problem: Callable[[Problem], None] | None = None,
                 edge_tolerance: float = EDGE_TOLERANCE) -> Iterator[Sample]:
    """Load samples on worker threads (decoding releases the GIL), in order; bad items are reported to
    on_problem and skipped, or raise a DataError when on_problem is None."""
    load = functools.partial(try_load_sample, edge_tolerance=edge_tolerance)
    for sample, problems in bounded_map(load, items, workers):
        if problems:
            if on_problem is None:
                raise DataError(problems[0].path, problems[0].reason)
            for p in problems:
                on_problem(p)
            continue
        yield sample
