"""The submission CSV: header `image_name,class,rle`, 29 rows per image in class order, images sorted."""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from . import rle
from plumbing.atomic import atomic_path, check_output
from .classes import CLASSES, NUM_CLASSES
from plumbing.errors import DataError
from .images import list_images, read_image

HEADER = ("image_name", "class", "rle")


def write_submission(path: str | Path, encoded: Mapping[str, Iterable[str]]) -> int:
    """image name -> 29 RLE strings in class order; writes the CSV atomically and returns the row count."""
    rows = 0
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(HEADER)
            for name in sorted(encoded):
                strings = list(encoded[name])
                if len(strings) != NUM_CLASSES:
                    raise ValueError(f"{name}: {len(strings)} masks, expected {NUM_CLASSES}")
                for cls, code in zip(CLASSES, strings):
                    writer.writerow((name, cls, code))
                    rows += 1
    return rows


def merge_submissions(parts: Iterable[str | Path], out: str | Path, images: str | Path | None = None) -> int:
    """Shards from `cascade predict --shard i/n` -> one submission (images sorted, written atomically).

    Every part must be a valid submission and no image may appear in two parts. With `images` (the test image
    folder) the merged file must also pass validate_submission against it, or nothing is written. Returns the
    row count.
    """
    parts = list(parts)
    check_output(out, parts, suffix=".csv")
    sizes = image_sizes(images) if images is not None else None
    with atomic_path(out) as tmp:  # published only once it has passed the check
        merged: dict[str, list[str]] = {}
        for part in parts:
            report = validate_submission(part, default_hw=(2**31, 1))  # each part's bounds checked when written
            if not report.ok:
                raise DataError(part, f"not a valid submission: {report.problems[0]}")
            df = read_submission(part)
            for name, group in df.groupby("image_name", sort=False):
                if name in merged:
                    raise DataError(part, f"image {name} is also in another part")
                merged[name] = group["rle"].tolist()
        if not merged:
            raise DataError(out, "no parts to merge")
        rows = write_submission(tmp, merged)
        if sizes is not None:
            report = validate_submission(tmp, sizes)
            if not report.ok:
                raise DataError(out, f"not written: the merged parts fail the check ({report.problems[0]})")
    return rows


def encode_masks(masks: np.ndarray, boxes: np.ndarray | None = None) -> list[str]:
    """(29, H, W) binary masks -> 29 RLE strings; boxes: (29, 4) x0, y0, x1, y1 known to hold each class's
    pixels (rle.encode then reads only those), None to scan."""
    if masks.shape[0] != NUM_CLASSES:
        raise ValueError(f"expected {NUM_CLASSES} masks, got {masks.shape[0]}")
    return [rle.encode(m, None if boxes is None else boxes[c]) for c, m in enumerate(masks)]


def _unreadable(path: str | Path, exc: OSError) -> DataError:
    if isinstance(exc, FileNotFoundError):
        return DataError(path, "submission file not found")
    if isinstance(exc, IsADirectoryError) or Path(path).is_dir():
        return DataError(path, "is a folder, not a submission CSV file")
    return DataError(path, f"cannot read the submission ({exc.strerror or type(exc).__name__})")


def parse_size(text: str) -> tuple[int, int]:
    """`WxH` (e.g. 2048x2048) -> (H, W), both positive, or a one-line error naming the option."""
    match = re.fullmatch(r"\s*([0-9]{1,9})\s*[xX]\s*([0-9]{1,9})\s*", str(text))
    if not match or min(int(match[1]), int(match[2])) < 1:
        raise DataError("--size", f"{text!r} is not WxH with positive whole numbers, e.g. 2048x2048")
    return int(match[2]), int(match[1])


def read_submission(path: str | Path) -> pd.DataFrame:
    """The CSV as strings; an empty mask stays an empty string (pandas would make it NaN by default)."""
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False)
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not a readable CSV ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") from None


@dataclass
class SubmissionReport:
    images: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def image_sizes(folder: str | Path) -> dict[str, tuple[int, int]]:
    """File name -> (H, W) of every test image under folder."""
    return {p.name: read_image(p).shape[:2] for p in list_images(folder)}


def validate_submission(path: str | Path, sizes: Mapping[str, tuple[int, int]] | None = None,
                        default_hw: tuple[int, int] = (2048, 2048), max_problems: int = 20) -> SubmissionReport:
    """Check format, order, class names and every RLE against the image sizes.

    With `sizes` (from the test images) the image list must match exactly; without it every image is taken
    to be `default_hw`.
    """
    report = SubmissionReport()
    problem = _problem_list(report, max_problems)
    path = Path(path)
    try:
        header = _read_header_and_count_fields(path, problem)
        if header is None or tuple(header) != HEADER:
            problem(_header_problem(header))
            return report
        if report.problems:
            return report
        df = read_submission(path)
        names = list(dict.fromkeys(df["image_name"].tolist()))
        report.rows, report.images = len(df), len(names)
        _check_sorted(names, problem)
        if sizes is not None:
            _check_coverage(names, sizes, problem)
        _check_row_count(df, names, problem)
        for name, group in df.groupby("image_name", sort=False):
            _check_image_rows(name, group, (sizes or {}).get(name, default_hw), problem)
    except _EnoughProblems:
        pass
    return report


class _EnoughProblems(Exception):
    """max_problems are in the report: one raise stops every check, none has to say whether to go on."""


def _problem_list(report: SubmissionReport, max_problems: int) -> Callable[[str], None]:
    """Adds a problem to the report; raises _EnoughProblems once it holds max_problems."""
    def problem(text: str) -> None:
        report.problems.append(text)
        if len(report.problems) >= max_problems:
            raise _EnoughProblems

    return problem


def _read_header_and_count_fields(path: Path, problem: Callable[[str], None]) -> list[str] | None:
    """The header (None for an empty file); under the expected header, a problem for each row with another
    number of fields."""
    # pandas' read_csv, which reads the file here and most likely in the scorer, drops a leading UTF-8
    # byte-order mark (Excel writes one), so utf-8-sig accepts the same files.
    try:
        with open(path, newline="", encoding="utf-8-sig") as f, _fields_of_any_size():
            reader = csv.reader(f)
            header = next(reader, None)
            if header is not None and tuple(header) == HEADER:
                # pandas pads a short row with empty fields (a missing rle would pass as an empty mask) and
                # shifts the columns of a long first row into the index: count the fields here.
                for row in reader:
                    blank = not row or (len(row) == 1 and not row[0].strip())  # pandas skips these too
                    if not blank and len(row) != len(HEADER):
                        problem(f"line {reader.line_num}: {len(row)} fields, expected {len(HEADER)} "
                                f"({','.join(HEADER)})")
    except OSError as exc:
        raise _unreadable(path, exc) from None
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(path, f"not a text CSV file ({type(exc).__name__})") from None
    return header


# csv's reader refuses a field past 131,072 characters by default; one mask's RLE can be far longer (a 2048 x
# 2048 mask of alternating pixels has about 2 million runs, some 30 MB of text). The C long limit on every platform.
MAX_FIELD = 2**31 - 1


@contextlib.contextmanager
def _fields_of_any_size():
    previous = csv.field_size_limit(MAX_FIELD)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


def _header_problem(header: list[str] | None) -> str:
    shown = ",".join(header) if header else "(empty file)"
    shown = shown if shown.isascii() and shown.isprintable() else ascii(shown)  # make invisible characters seen
    return f"header is {shown}, expected {','.join(HEADER)}"


def _check_sorted(names: list[str], problem: Callable[[str], None]) -> None:
    if names != sorted(names):
        problem("images are not in sorted order")


def _check_coverage(names: list[str], sizes: Mapping[str, tuple[int, int]], problem: Callable[[str], None]) -> None:
    """Every test image has rows, and every row names a test image."""
    missing = sorted(set(sizes) - set(names))
    extra = sorted(set(names) - set(sizes))
    if missing:
        problem(f"{len(missing)} images have no rows, e.g. {missing[0]}")
    if extra:
        problem(f"{len(extra)} rows name images not in the image folder, e.g. {extra[0]}")


def _check_row_count(df: pd.DataFrame, names: list[str], problem: Callable[[str], None]) -> None:
    """One row per class for every image; the first image that has another count is named."""
    if len(df) == NUM_CLASSES * len(names):
        return
    counts = df.groupby("image_name", sort=False).size()
    name = next(n for n, k in counts.items() if k != NUM_CLASSES)
    lacking = [c for c in CLASSES if c not in set(df.loc[df["image_name"] == name, "class"])]
    detail = f"{name} has {counts[name]}" + (f", no {lacking[0]} row" if lacking else "")
    problem(f"{len(df)} rows for {len(names)} images, expected {NUM_CLASSES * len(names)} ({detail})")


FIRST_ROW_LINE = 2  # the file's line of data row 0: the header is line 1


def _check_image_rows(name: str, group: pd.DataFrame, hw: tuple[int, int], problem: Callable[[str], None]) -> None:
    """One image's rows: together, in class order, each RLE within an image of hw."""
    rows = group.index.to_numpy()
    if rows[-1] - rows[0] + 1 != len(rows):
        problem(f"line {FIRST_ROW_LINE + rows[0]}: rows of {name} are not contiguous")
    _check_class_order(name, group["class"].tolist(), FIRST_ROW_LINE + rows[0], problem)
    for idx, cls, code in zip(rows, group["class"].tolist(), group["rle"].tolist()):
        try:
            why = rle.check_runs(rle.parse(code), hw[0] * hw[1])
        except ValueError as exc:
            why = str(exc)
        if why:
            problem(f"line {FIRST_ROW_LINE + idx}: {name} {cls}: {why}")


def _check_class_order(name: str, classes: list[str], first_line: int, problem: Callable[[str], None]) -> None:
    """The classes in CLASSES order; the first row that differs is named."""
    expected = list(CLASSES)
    if classes == expected:
        return
    bad = next((i for i, (a, b) in enumerate(zip(classes, expected)) if a != b), min(len(classes), NUM_CLASSES))
    got = classes[bad] if bad < len(classes) else "(none)"
    want = expected[bad] if bad < NUM_CLASSES else "(no more rows)"
    problem(f"line {first_line + bad}: {name} row {bad + 1} is class {got!r}, expected {want!r}")
