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
from convert.base_submission import UNBOUNDED_HW, BaseSubmission
from convert.carpal_region import describe_sources
from convert.classes import NUM_CLASSES
from convert.images import AS_STORED, list_images, read_hw, read_image_oriented
from convert.submission import encode_masks, validate_submission, write_submission
from plumbing.atomic import check_output
from plumbing.errors import CascadeError, DataError, Problem
from plumbing.parallel import bounded_map

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
                   workers: int = os.cpu_count() or 1,
                   progress: Callable[[int, int], None] | None = None,
                   base: str | Path | None = None, gather=None) -> PredictSummary:
    """Stage 1 (+ stage 2 pasted in its carpal region unless stage2 is None) on every image; several weights or
    checkpoints for a stage make it an ensemble (see Cascade). With `base` (any full-hand model's submission
    for these images) stage 2 is pasted over the base's masks instead of stage 1's, and every class it does not
    paste keeps the base's row byte for byte; the region is stage 1's if `stage1` is given, else found on the
    base's masks. The CSV is written atomically at the end, so an error never leaves half a submission.
    `shard=(i, n)` takes every n-th image from the i-th on, for n machines; `merge_submissions` joins the parts.
    gather (a stage2_segment.distributed.Dist, under torchrun): the shards' rows go to rank 0, which alone writes
    the whole submission."""
    check_output(out, [*paths_of(stage1 or []), *paths_of(stage2 or []), paste_file, base], suffix=".csv")
    paths = _shard_images(images, shard)
    plan = PastePlan.load(paste_file) if paste_file else None
    full_hand, stored = _checked_base(base, paths, images, skip_bad)
    model = Cascade(stage1, stage2, device=device, plan=plan, tta_hflip=tta_hflip, base=full_hand)
    p = _Predicting(model, full_hand, stored, skip_bad, batch, PredictSummary(Path(out)))
    start = time.perf_counter()
    if gather is None:
        _do_predict(p, paths, workers, progress)
        _write_checked(p, out, images, len(paths))
    elif _gathered(p, gather, lambda: _do_predict(p, paths, workers, progress)):
        _write_checked(p, out, images, len(list_images(images)))
    p.summary.seconds = time.perf_counter() - start
    return p.summary


def _gathered(p: _Predicting, dist, work: Callable[[], None]) -> bool:
    """Run this rank's share, then bring every rank's rows and summary into rank 0's p; True on rank 0. An
    error on any rank is raised on rank 0 too (one that stopped first would leave it waiting for ever)."""
    import torch.distributed as tdist

    try:
        work()
        mine = ("ok", p.encoded, p.summary)
    except CascadeError as exc:  # sent as its line: an exception with its own arguments may not unpickle
        mine = ("error", str(exc), None)
    parts = [None] * dist.world if dist.main else None
    tdist.gather_object(mine, parts, dst=0)
    if not dist.main:
        if mine[0] == "error":
            raise CascadeError(mine[1])
        return False
    for kind, found, summary in parts:
        if kind == "error":
            raise CascadeError(found)
    p.encoded, s = {}, p.summary
    s.sizes, s.skipped, s.oriented, s.regions = {}, [], [], Counter()
    for _, encoded, summary in parts:
        p.encoded.update(encoded)
        s.sizes.update(summary.sizes)
        s.skipped += summary.skipped
        s.oriented += summary.oriented
        s.regions += summary.regions
    return True


_SKIP_BAD_HINT = " (or pass --skip-bad to leave it out)"


@dataclass
class _Predicting:
    """What the steps of one predict_folder call share: the model, and the rows and summary built so far."""
    model: Cascade
    full_hand: BaseSubmission | None
    stored: dict[str, tuple[int, int]]  # image name -> (H, W) from its header; only with a base
    skip_bad: bool
    batch: int
    summary: PredictSummary
    encoded: dict[str, list[str]] = field(default_factory=dict)
    pending: list = field(default_factory=list)  # (path, image) decoded, waiting for a full batch
    # the previous batch's paste + encode, running on threads beside the next batch
    finishing: list = field(default_factory=list)


def _shard_images(images: str | Path, shard: tuple[int, int]) -> list[Path]:
    index, count = shard
    if not 0 <= index < count:
        raise DataError("--shard", f"shard {index}/{count}: expected 0 <= i < n")
    paths = list_images(images)[index::count]
    if not paths:
        raise DataError(images, f"shard {index}/{count} has no images")
    return paths


def _checked_base(base: str | Path | None, paths: list[Path], images: str | Path,
                  skip_bad: bool) -> tuple[BaseSubmission | None, dict[str, tuple[int, int]]]:
    """The base submission and each image's size from its header, checked before any model is loaded."""
    if base is None:
        return None, {}
    full_hand, stored = BaseSubmission(base), {}
    full_hand.check_names([p.name for p in paths], str(images))
    for p in paths:
        try:
            stored[p.name] = read_hw(p)
        except DataError as exc:
            if not skip_bad:
                raise DataError(exc.path, exc.reason + _SKIP_BAD_HINT) from None
    full_hand.check(stored)
    return full_hand, stored


def _do_predict(p: _Predicting, paths: list[Path], workers: int,
                progress: Callable[[int, int], None] | None) -> None:
    """Every image through the model in batches; images are decoded on worker threads while the model runs."""
    finisher = ThreadPoolExecutor(max(1, workers))
    try:
        for done, (path, decoded, problem) in enumerate(bounded_map(_decode, paths, workers), 1):
            if problem is not None:
                _skip(p, path, problem)
            else:
                _queue(p, path, decoded, finisher)
            if progress:
                progress(done, len(paths))
        if p.pending:
            _flush(p, finisher)
        _collect(p)
    finally:
        finisher.shutdown(cancel_futures=True)


def _skip(p: _Predicting, path: Path, problem: Problem) -> None:
    """An unreadable image: an error, or with skip_bad rows that keep the submission complete."""
    if not p.skip_bad:
        raise DataError(problem.path, problem.reason + _SKIP_BAD_HINT)
    p.summary.skipped.append(problem)
    # keeps the submission complete (the base's rows where there is one); reported as skipped
    p.encoded[path.name] = p.full_hand.rows(path.name) if p.full_hand else [""] * NUM_CLASSES
    # empty masks fit any size; the base's rows were checked against the header's size, if readable
    p.summary.sizes[path.name] = p.stored.get(path.name, UNBOUNDED_HW) if p.full_hand else (0, 0)


def _queue(p: _Predicting, path: Path, decoded, finisher: ThreadPoolExecutor) -> None:
    image, orientation = decoded
    if orientation != AS_STORED:
        p.summary.oriented.append(str(path))
    p.pending.append((path, image))
    if len(p.pending) >= p.batch:
        _flush(p, finisher)


def _flush(p: _Predicting, finisher: ThreadPoolExecutor) -> None:
    outputs = p.model.run([im for _, im in p.pending], [path.name for path, _ in p.pending])
    _collect(p)  # at most two batches of masks alive at once
    for (path, image), result in zip(p.pending, outputs):
        p.finishing.append((path.name, finisher.submit(_encode, p, result, path.name)))
        p.summary.sizes[path.name] = image.shape[:2]
        p.summary.regions[result.region.source] += 1
    p.pending.clear()


def _collect(p: _Predicting) -> None:
    for name, future in p.finishing:
        p.encoded[name] = future.result()
    p.finishing.clear()


def _encode(p: _Predicting, result, name: str) -> list[str]:
    boxes = p.model.final_boxes(result)  # before the paste: the masks change in place
    masks = p.model.final_masks(result)
    if p.full_hand is None:
        return encode_masks(masks, boxes)
    rows = p.full_hand.rows(name)  # the base's own text for every class not pasted
    for c in p.model.plan.classes if result.probs is not None else ():
        rows[c] = rle.encode(masks[c], None if boxes is None else boxes[c])
    return rows


def _write_checked(p: _Predicting, out: str | Path, images: str | Path, count: int) -> None:
    """The CSV, written atomically and checked as validate-submission checks it."""
    if len(p.summary.skipped) == count:
        raise DataError(images, "no image could be read")
    write_submission(out, p.encoded)
    report = validate_submission(out, p.summary.sizes)
    if not report.ok:  # our own writer produced it: a bug, but never hand in a file that fails the check
        raise DataError(out, f"written but not valid: {report.problems[0]}")
    p.summary.images = len(p.encoded) - len(p.summary.skipped)


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
    from stage2_segment import distributed

    if distributed.launched_by_torchrun():
        if (shard_index, shard_count) != (0, 1):
            raise CascadeError("--shard under torchrun: the launcher's rank and world size shard the images; "
                               "drop --shard")
        return _predict_ranks(images, out, stage1 or None, None if stage1_only else stage2, paste_file=paste_file,
                              tta_hflip=tta, base=base, **kwargs)
    return predict_folder(images, out, stage1 or None, None if stage1_only else stage2, paste_file=paste_file,
                          tta_hflip=tta, shard=(shard_index, shard_count), base=base, **kwargs)


def _predict_ranks(images, out, *args, device: str | None = None, **kwargs) -> PredictSummary:
    """predict_folder in every process torchrun started (one per GPU, on one node or several): each its share
    of the images (by rank and world size) on its own GPU; rank 0 gathers the rows and writes the one
    submission, checked, exactly as one process would have."""
    from stage2_segment import distributed

    dist, own = distributed.setup(device)
    try:
        return predict_folder(images, out, *args, device=str(own), shard=(dist.rank, dist.world),
                              gather=dist, **kwargs)
    finally:
        distributed.teardown(dist)
