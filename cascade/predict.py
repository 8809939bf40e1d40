"""`cascade predict`: a folder of images -> the RLE submission CSV."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np

from convert import rle
from convert.carpal_region import describe_sources
from convert.classes import NUM_CLASSES
from convert.images import AS_STORED, list_images, read_hw, read_image_oriented
from convert.submission import encode_masks, validate_submission, write_submission
from convert.submission_rows import UNBOUNDED_HW, SubmissionRows
from plumbing.atomic import check_output
from plumbing.errors import CascadeError, DataError, Problem
from plumbing.parallel import bounded_map

from .paste import PastePlan
from .pipeline import Cascade, CascadeOutput, path_list

if TYPE_CHECKING:
    from stage2_segment.distributed import Dist


class UnreadableImage(DataError):
    """A test image that cannot be read; `skip_bad` leaves such images out (the command names that flag)."""


@dataclass
class PredictSummary:
    out: Path
    images: int = 0
    regions: Counter = field(default_factory=Counter)   # region source -> images
    seconds: float = 0.0
    skipped: list[Problem] = field(default_factory=list)
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # image name -> (H, W) as decoded
    oriented: list[str] = field(default_factory=list)  # images with an EXIF orientation tag, read as stored

    def describe(self) -> str:
        per = self.seconds / self.images if self.images else 0.0
        return (f"{self.images} images -> {self.out}; carpal regions {describe_sources(self.regions)}; "
                f"{per:.2f} s per image; {len(self.skipped)} skipped")


def _decode(path: Path):
    try:
        image, orientation = read_image_oriented(path)
    except DataError as exc:
        return path, None, Problem(exc.path, exc.reason)
    return path, (image, orientation), None


def predict_folder(images: str | Path, out: str | Path, stage1: str | Path | Sequence[str | Path] | None,
                   stage2: str | Path | Sequence[str | Path] | None = None,
                   device: str | None = None, paste_file: str | Path | None = None, tta_hflip: bool = False,
                   batch: int = 4, skip_bad: bool = False, shard: tuple[int, int] = (0, 1),
                   workers: int | None = None, progress: Callable[[int, int], None] | None = None,
                   base: str | Path | None = None, gather: Dist | None = None) -> PredictSummary:
    """Stage 1 (+ stage 2 pasted in its carpal region unless stage2 is None) on every image; several weights or
    checkpoints for a stage make it an ensemble (see Cascade). With `base` (any full-hand model's submission
    for these images) stage 2 is pasted over the base's masks instead of stage 1's, and every class it does not
    paste keeps the base's row byte for byte; the region is stage 1's if `stage1` is given, else found on the
    base's masks. The CSV is written atomically at the end, so an error never leaves half a submission.
    `shard=(i, n)` takes every n-th image from the i-th on, for n machines; `merge_submissions` joins the parts.
    workers: threads decoding and encoding images (None: all cores). gather (under torchrun): the shards' rows
    go to rank 0, which alone writes the whole submission."""
    check_output(out, [*path_list(stage1 or []), *path_list(stage2 or []), paste_file, base], suffix=".csv")
    paths = _shard_images(images, shard)
    plan = PastePlan.load(paste_file) if paste_file else None
    base_rows, stored = _checked_base(base, paths, images, skip_bad)
    model = Cascade(stage1, stage2, device=device, plan=plan, tta_hflip=tta_hflip, base=base_rows)
    predictor = Predictor(model, base_rows, stored, skip_bad, batch, Path(out))
    workers = (os.cpu_count() or 1) if workers is None else workers
    start = time.perf_counter()
    if gather is None:
        predictor.predict(paths, workers, progress)
        predictor.write(out, images, len(paths))
    elif predictor.predict_gathered(gather, paths, workers, progress):
        predictor.write(out, images, len(list_images(images)))
    predictor.summary.seconds = time.perf_counter() - start
    return predictor.summary


def _shard_images(images: str | Path, shard: tuple[int, int]) -> list[Path]:
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= i < n")
    paths = list_images(images)[index::count]
    if not paths:
        raise DataError(images, f"shard {index}/{count} has no images")
    return paths


def _checked_base(base: str | Path | None, paths: list[Path], images: str | Path,
                  skip_bad: bool) -> tuple[SubmissionRows | None, dict[str, tuple[int, int]]]:
    """The base submission and each image's size from its header, checked before any model is loaded."""
    if base is None:
        return None, {}
    base_rows, stored = SubmissionRows(base), {}
    base_rows.check_names([p.name for p in paths], str(images))
    for p in paths:
        try:
            stored[p.name] = read_hw(p)
        except DataError as exc:
            if not skip_bad:
                raise UnreadableImage(exc.path, exc.reason) from None
    base_rows.check(stored)
    return base_rows, stored


class Predictor:
    """One predict_folder call: the model, and the submission's rows and summary as they are built. predict
    runs the images through (write then checks and writes the CSV); the methods below follow in run order."""

    def __init__(self, model: Cascade, base_rows: SubmissionRows | None, stored: dict[str, tuple[int, int]],
                 skip_bad: bool, batch: int, out: Path):
        self.model, self.base_rows, self.skip_bad, self.batch = model, base_rows, skip_bad, batch
        self.stored = stored  # image name -> (H, W) from its header; only with a base
        self.summary = PredictSummary(out)
        self.encoded: dict[str, list[str]] = {}  # image name -> its 29 RLE rows
        self.pending: list[tuple[Path, np.ndarray]] = []  # decoded, waiting for a full batch
        # the previous batch's paste + encode, running on threads beside the next batch
        self.finishing: list[tuple[str, Future]] = []

    def predict(self, paths: list[Path], workers: int, progress: Callable[[int, int], None] | None) -> None:
        """Every image through the model in batches; images are decoded on worker threads while the model
        runs."""
        finisher = ThreadPoolExecutor(max(1, workers))
        try:
            for done, (path, decoded, problem) in enumerate(bounded_map(_decode, paths, workers), 1):
                if problem is not None:
                    self._skip(path, problem)
                else:
                    self._queue(path, decoded, finisher)
                if progress:
                    progress(done, len(paths))
            if self.pending:
                self._flush(finisher)
            self._collect()
        finally:
            finisher.shutdown(cancel_futures=True)

    def _skip(self, path: Path, problem: Problem) -> None:
        """An unreadable image: an error, or with skip_bad rows that keep the submission complete."""
        if not self.skip_bad:
            raise UnreadableImage(problem.path, problem.reason)
        self.summary.skipped.append(problem)
        # keeps the submission complete (the base's rows where there is one); reported as skipped
        self.encoded[path.name] = self.base_rows.rows(path.name) if self.base_rows else [""] * NUM_CLASSES
        # empty masks fit any size; the base's rows were checked against the header's size, if readable
        self.summary.sizes[path.name] = self.stored.get(path.name, UNBOUNDED_HW) if self.base_rows else (0, 0)

    def _queue(self, path: Path, decoded: tuple[np.ndarray, int], finisher: ThreadPoolExecutor) -> None:
        image, orientation = decoded
        if orientation != AS_STORED:
            self.summary.oriented.append(str(path))
        self.pending.append((path, image))
        if len(self.pending) >= self.batch:
            self._flush(finisher)

    def _flush(self, finisher: ThreadPoolExecutor) -> None:
        outputs = self.model.run([im for _, im in self.pending], [path.name for path, _ in self.pending])
        self._collect()  # at most two batches of masks alive at once
        for (path, image), result in zip(self.pending, outputs):
            self.finishing.append((path.name, finisher.submit(self._encode, result, path.name)))
            self.summary.sizes[path.name] = image.shape[:2]
            self.summary.regions[result.region.source] += 1
        self.pending.clear()

    def _collect(self) -> None:
        for name, future in self.finishing:
            self.encoded[name] = future.result()
        self.finishing.clear()

    def _encode(self, result: CascadeOutput, name: str) -> list[str]:
        boxes = self.model.final_boxes(result)  # before the paste: the masks change in place
        masks = self.model.final_masks(result)
        if self.base_rows is None:
            return encode_masks(masks, boxes)
        rows = self.base_rows.rows(name)  # the base's own text for every class not pasted
        for c in self.model.plan.classes if result.probs is not None else ():
            rows[c] = rle.encode(masks[c], None if boxes is None else boxes[c])
        return rows

    def predict_gathered(self, dist: Dist, paths: list[Path], workers: int,
                         progress: Callable[[int, int], None] | None) -> bool:
        """predict on this rank's share, then every rank's rows and summary brought into rank 0's; True on
        rank 0. An error on any rank is raised on rank 0 too (one that stopped first would leave it waiting for
        ever)."""
        import torch.distributed as tdist

        try:
            self.predict(paths, workers, progress)
            mine = ("ok", self.encoded, self.summary)
        except CascadeError as exc:  # sent as its line: an exception with its own arguments may not unpickle
            mine = ("error", str(exc), None)
        parts = [None] * dist.world if dist.main else None
        tdist.gather_object(mine, parts, dst=0)
        if not dist.main:
            if mine[0] == "error":
                raise CascadeError(mine[1])
            return False
        for kind, found, _ in parts:
            if kind == "error":
                raise CascadeError(found)
        self._merge([(encoded, summary) for _, encoded, summary in parts])
        return True

    def _merge(self, parts: list[tuple[dict[str, list[str]], PredictSummary]]) -> None:
        """Every rank's rows and summary in place of this rank's own."""
        self.encoded, s = {}, self.summary
        s.sizes, s.skipped, s.oriented, s.regions = {}, [], [], Counter()
        for encoded, summary in parts:
            self.encoded.update(encoded)
            s.sizes.update(summary.sizes)
            s.skipped += summary.skipped
            s.oriented += summary.oriented
            s.regions += summary.regions

    def write(self, out: str | Path, images: str | Path, count: int) -> None:
        """The CSV, written atomically and checked as validate-submission checks it."""
        if len(self.summary.skipped) == count:
            raise DataError(images, "no image could be read")
        write_submission(out, self.encoded)
        report = validate_submission(out, self.summary.sizes)
        if not report.ok:  # our own writer produced it: a bug, but never hand in a file that fails the check
            raise DataError(out, f"written but not valid: {report.problems[0]}")
        self.summary.images = len(self.encoded) - len(self.summary.skipped)


def run_prediction(images: str | Path, out: str | Path, stage1: str | Path | Sequence[str | Path] | None,
                   stage2: str | Path | Sequence[str | Path] | None = None, shard: tuple[int, int] = (0, 1),
                   device: str | None = None, **kwargs) -> PredictSummary:
    """predict_folder in this process, or under torchrun in every process it started (one per GPU, on one node
    or several): each its share of the images (by rank and world size, so `shard` stays (0, 1)) on its own GPU;
    rank 0 gathers the rows and writes the one submission, checked, exactly as one process would have."""
    from stage2_segment import distributed

    if not distributed.launched_by_torchrun():
        return predict_folder(images, out, stage1, stage2, device=device, shard=shard, **kwargs)
    if shard != (0, 1):
        raise ValueError("under torchrun the launcher's rank and world size shard the images")
    dist, own = distributed.setup(device)
    try:
        return predict_folder(images, out, stage1, stage2, device=str(own), shard=(dist.rank, dist.world),
                              gather=dist, **kwargs)
    finally:
        distributed.teardown(dist)
