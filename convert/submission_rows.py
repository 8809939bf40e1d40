"""A base submission: any full-hand model's CSV, read and checked: the full-hand prediction the cascade pastes stage 2
over, or the priors stage 2 trains on (a base's out-of-fold predictions of the training images)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from . import rle
from .classes import CLASSES, NUM_CLASSES
from .submission import read_submission, validate_submission
from plumbing.errors import DataError

UNBOUNDED_HW = (2**31, 1)  # the format check alone; each mask's bounds are checked at its own image's size


class SubmissionRows:
    """The rows of a submission file (image_name,class,rle), kept as written: a class the cascade does not paste
    goes out byte for byte as it came in. It may hold more images than are predicted (e.g. an out-of-fold file
    of every training image)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        report = validate_submission(self.path, default_hw=UNBOUNDED_HW)
        if not report.ok:
            raise DataError(self.path, f"not a valid base submission: {report.problems[0]}")
        df = read_submission(self.path)
        self._rows: dict[str, list[str]] = {
            name: group["rle"].tolist() for name, group in df.groupby("image_name", sort=False)}

    def check(self, sizes: Mapping[str, tuple[int, int]]) -> None:
        """Every image of `sizes` (name -> (H, W)) is in the base, and each of its 29 masks fits that size."""
        for name, hw in sizes.items():
            self.check_image(name, hw)

    def check_names(self, names: Iterable[str], where: str) -> None:
        missing = [n for n in names if n not in self._rows]
        if missing:
            raise DataError(self.path, f"image {missing[0]} of {where} is not in the base submission"
                                       + (f" ({len(missing)} images missing)" if len(missing) > 1 else ""))

    def check_image(self, name: str, hw: tuple[int, int]) -> None:
        if name not in self._rows:
            raise DataError(self.path, f"image {name} is not in the base submission")
        for cls, code in zip(CLASSES, self._rows[name]):
            problem = rle.check_runs(rle.parse(code), hw[0] * hw[1])  # syntax was checked on loading
            if problem:
                raise DataError(self.path, f"{name} {cls}: {problem} (the image is {hw[1]}x{hw[0]})")

    def rows(self, name: str) -> list[str]:
        """The image's 29 RLE strings as the base wrote them, in class order."""
        return list(self._rows[name])

    def boxes(self, name: str, hw: tuple[int, int]) -> np.ndarray:
        """(29, 4) x0, y0, x1, y1 holding each class's pixels, read off the runs (rle.encode then reads only these)."""
        return np.array([rle.runs_box(rle.parse(code), hw) for code in self._rows[name]], np.int64)

    def masks(self, name: str, hw: tuple[int, int], classes: Sequence[int] | None = None) -> np.ndarray:
        """The image's (29, H, W) uint8 masks (or only those of `classes`, in that order); a run beyond the
        image is a one-line error naming image and class."""
        if name not in self._rows:
            raise DataError(self.path, f"image {name} is not in the base submission")
        classes = range(NUM_CLASSES) if classes is None else classes
        out = np.empty((len(classes), *hw), np.uint8)
        for j, c in enumerate(classes):
            try:
                out[j] = rle.decode(self._rows[name][c], hw)  # checks the runs against the image's size
            except ValueError as exc:
                raise DataError(self.path, f"{name} {CLASSES[c]}: {exc} (the image is {hw[1]}x{hw[0]})") from None
        return out
