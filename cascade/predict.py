"""`cascade predict`: a folder of images -> the RLE submission CSV."""

from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from convert import rle
from convert.classes import NUM_CLASSES
from convert.images import AS_STORED, read_hw, read_image_oriented
from convert.submission import encode_masks, list_images, validate_submission, write_submission
from plumbing.atomic import check_output
from plumbing.errors import CascadeError, DataError, Problem
from plumbing.parallel import bounded_map

from .base import UNBOUNDED_HW, BaseSubmission
from .paste import PastePlan
from .pipeline import Cascade, paths_of


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
        fallback = self.images - self.regions.get("carpals", 0)
        return (f"{self.images} images -> {self.out}; carpal regions from the carpals for "
                f"{self.regions.get('carpals', 0)}, from the fallback for {fallback} "
                f"({dict(self.regions)}); {per:.2f} s per image; {len(self.skipped)} skipped")


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
                   workers: int = os.cpu_count() or 1,
                   progress: Callable[[int, int], None] | None = None,
                   base: str | Path | None = None) -> PredictSummary:
    """Stage 1 (+ stage 2 pasted in its carpal region unless stage2 is None) on every image; several weights or
    checkpoints for a stage make it an ensemble (see Cascade). With `base` (any full-hand model's submission
    for these images) stage 2 is pasted over the base's masks instead of stage 1's, and every class it does not
    paste keeps the base's row byte for byte; the region is stage 1's if `stage1` is given, else found on the
    base's masks. The CSV is written atomically at the end, so an error never leaves half a submission.
    `shard=(i, n)` takes every n-th image from the i-th on, for n machines; `merge_submissions` joins the parts."""
    inputs = [*paths_of(stage1 or []), *paths_of(stage2 or []), paste_file, base]
    check_output(out, inputs, suffix=".csv")
    index, count = shard
    if not 0 <= index < count:
        raise DataError("--shard", f"shard {index}/{count}: expected 0 <= i < n")
    paths = list_images(images)[index::count]
    if not paths:
        raise DataError(images, f"shard {index}/{count} has no images")
    plan = PastePlan.load(paste_file) if paste_file else None
    full_hand, stored = None, {}
    if base is not None:  # checked against the images before any model is loaded
        full_hand = BaseSubmission(base)
        full_hand.check_names([p.name for p in paths], str(images))
        for p in paths:
            try:
                stored[p.name] = read_hw(p)
            except DataError as exc:
                if not skip_bad:
                    raise DataError(exc.path, exc.reason + " (or pass --skip-bad to leave it out)") from None
        full_hand.check(stored)
    model = Cascade(stage1, stage2, device=device, plan=plan, tta_hflip=tta_hflip, base=full_hand)

    def encode(result, name: str) -> list[str]:
        masks = model.final_masks(result)
        if full_hand is None:
            return encode_masks(masks)
        rows = full_hand.rows(name)  # the base's own text for every class not pasted
        for c in model.plan.classes if result.probs is not None else ():
            rows[c] = rle.encode(masks[c])
        return rows

    summary = PredictSummary(Path(out))
    encoded: dict[str, list[str]] = {}
    start = time.perf_counter()
    pending: list = []
    finishing: list = []  # the previous batch's paste + encode, running on threads beside the next batch
    finisher = ThreadPoolExecutor(max(1, workers))

    def collect() -> None:
        for name, future in finishing:
            encoded[name] = future.result()
        finishing.clear()

    def flush() -> None:
        outputs = model.run([im for _, im in pending], [path.name for path, _ in pending])
        collect()  # at most two batches of masks alive at once
        for (path, image), result in zip(pending, outputs):
            finishing.append((path.name, finisher.submit(encode, result, path.name)))
            summary.sizes[path.name] = image.shape[:2]
            summary.regions[result.region.source] += 1
        pending.clear()

    # images are decoded on worker threads while the model runs
    try:
        for done, (path, decoded, problem) in enumerate(bounded_map(_decode, paths, workers), 1):
            if problem is not None:
                if not skip_bad:
                    raise DataError(problem.path, problem.reason + " (or pass --skip-bad to leave it out)")
                summary.skipped.append(problem)
                # keeps the submission complete (the base's rows where there is one); reported as skipped
                encoded[path.name] = full_hand.rows(path.name) if full_hand else [""] * NUM_CLASSES
                # empty masks fit any size; the base's rows were checked against the header's size, if readable
                summary.sizes[path.name] = stored.get(path.name, UNBOUNDED_HW) if full_hand else (0, 0)
            else:
                image, orientation = decoded
                if orientation != AS_STORED:
                    summary.oriented.append(str(path))
                pending.append((path, image))
                if len(pending) >= batch:
                    flush()
            if progress:
                progress(done, len(paths))
        if pending:
            flush()
        collect()
    finally:
        finisher.shutdown(cancel_futures=True)
    if len(summary.skipped) == len(paths):
        raise DataError(images, "no image could be read")
    write_submission(out, encoded)
    report = validate_submission(out, summary.sizes)
    if not report.ok:  # our own writer produced it: a bug, but never hand in a file that fails the check
        raise DataError(out, f"written but not valid: {report.problems[0]}")
    summary.images = len(encoded) - len(summary.skipped)
    summary.seconds = time.perf_counter() - start
    return summary


def run_prediction(images: str | Path, out: str | Path, stage1: Sequence[str | Path] = (),
                   stage2: Sequence[str | Path] = (), base: str | Path | None = None, stage1_only: bool = False,
                   paste_file: str | Path | None = None, tta: bool = False, shard: str = "0/1",
                   **kwargs) -> PredictSummary:
    """`cascade predict` with its options as plain values: their combination checked and `shard` (i/n) read
    before predict_folder (kwargs: device, batch, skip_bad, workers, progress); errors name the options."""
    if not stage1 and base is None:
        raise CascadeError("--stage1 is required (or --base, a full-hand submission to paste stage 2 over)")
    if base is not None and stage1_only:
        raise CascadeError("--stage1-only writes stage 1's own prediction: drop --base, or drop --stage1-only")
    if not stage1_only and not stage2:
        raise CascadeError("--stage2 is required unless --stage1-only is given")
    if stage1_only and (stage2 or paste_file or tta):
        raise CascadeError("--stage1-only leaves stage 2 out: drop --stage2, --paste-file and --tta, or drop it")
    try:
        shard_index, shard_count = (int(v) for v in shard.split("/"))
    except ValueError:
        raise CascadeError(f"--shard {shard!r}: expected i/n, e.g. 0/4") from None
    return predict_folder(images, out, stage1 or None, None if stage1_only else stage2, paste_file=paste_file,
                          tta_hflip=tta, shard=(shard_index, shard_count), base=base, **kwargs)
