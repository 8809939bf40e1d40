"""A generated set written in the competition's exact layout: images, JSON labels and file names."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import cv2
import numpy as np

from convert.classes import CLASSES
from convert.dataset import IMAGE_DIR, LABEL_DIR
from plumbing.atomic import atomic_path, replace_dir, write_text
from plumbing.errors import CascadeError, DataError
from plumbing.parallel import bounded_map
from plumbing.values import check_range

from .render import render
from .settings import MAX_SIZE, MIN_SIZE, SynthConfig, load_synth_config
from .shapes import place_hand


# Real file names are millisecond timestamps of mid-2022. Each seed (modulo 1000) and each patient gets its own
# slot, so names never clash within a set and differ between seeds.
_TIME_BASE_MS = 1_661_130_000_000
_TIME_SEED_STEP_MS = 100_000_000
_TIME_PATIENT_STEP_MS = 250_000
_STREAM_IMAGE, _STREAM_NAMES, _STREAM_POSES = 0, 1, 2
TEST_LABEL_DIR = "test_labels"  # beside train/ and test/: the test images' labels, kept out of test/
_HANDS = (("R", False), ("L", True))  # the right hand is taken first, as in the real ID001


def _rng(seed: int, patient: int, stream: int, hand: int = 0) -> np.random.Generator:
    """One independent generator per (seed, patient, hand): an image never depends on how many are made."""
    return np.random.default_rng([seed, patient, hand, stream])


def _image_stems(seed: int, patient: int, suffixed: bool) -> list[str]:
    rng = _rng(seed, patient, _STREAM_NAMES)
    t = _TIME_BASE_MS + (seed % 1000) * _TIME_SEED_STEP_MS + patient * _TIME_PATIENT_STEP_MS
    t_right = t + int(rng.integers(0, 100_000))
    t_left = t_right + int(rng.integers(30_000, 120_000))  # the second hand about a minute later
    return [f"image{ms}" + (f"_{tag}" if suffixed else "") for ms, (tag, _) in zip((t_right, t_left), _HANDS)]


def _annotation_doc(polygons: Sequence[tuple[int, np.ndarray]], stem: str, patient: str,
                   rng: np.random.Generator) -> dict:
    """The JSON document of one image, in the real files' shape (including their misleading metadata)."""
    def hex_id(n: int) -> str:
        return "".join(f"{int(v):x}" for v in rng.integers(0, 16, n))

    annotations = [{"id": f"{int(rng.integers(1, 100))}-{hex_id(32)}", "type": "poly_seg", "attributes": {},
                    "points": pts.tolist(), "label": CLASSES[cls]} for cls, pts in polygons]
    return {
        "annotations": annotations,
        "attributes": {},
        "file_id": hex_id(24),
        "filename": f"{stem}.jpg",
        "parent_path": f"/{patient}",
        "last_modifier_id": "synthetic",
        "metadata": {"height": 3060, "width": 3060},
        "last_workers": {},
    }


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise CascadeError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _bent_flags(seed: int, split: str, images: int, share: float | None) -> list[bool | None]:
    """Which of a split's images have a bent wrist: exactly round(share * images) of them, chosen at random
    (a per-image draw would leave 8 test images anywhere from 2 to 7 bent); None leaves it to each image's draw."""
    if share is None:
        return [None] * images
    order = np.random.default_rng([seed, _STREAM_POSES, split == "test"]).permutation(images)
    bent = set(order[:int(round(share * images))].tolist())
    return [i in bent for i in range(images)]


class _Job(NamedTuple):
    """One image to write: its split, patient number, hand (0 right, 1 left), file stem and pose."""
    split: str
    number: int
    hand: int
    stem: str
    left: bool
    bent: bool | None


def generate(out: str | Path, patients: int, test_patients: int = 0, size: int = 512, seed: int = 0,
             cfg: SynthConfig | None = None, progress: Callable[[int, int], None] | None = None,
             workers: int | None = None, overwrite: bool = False, bent_share: float | None = None,
             test_bent_share: float | None = None, test_labels: bool = False) -> dict:
    """Write `patients` labelled patients under out/train and `test_patients` unlabelled ones under out/test
    (IDs continue after train), two hands each, on `workers` threads (default: one per core). `bent_share` /
    `test_bent_share` make exactly that share of a split's images bent wrists (None: each image draws with
    pose.bent_wrist_prob), so a test set can be shifted from the training set as the real one is. With
    `test_labels` the test images' JSON goes to out/test_labels/<patient>/ (never into test/), for scoring a
    submission (`cascade evaluate --submission ... --data out/test --labels out/test_labels`). Same arguments
    -> byte-identical files, whatever the number of workers. The files are written into a sibling folder that
    replaces `out` only when complete; an `out` that is not empty is refused unless overwrite."""
    _check_arguments(patients, test_patients, seed, size, bent_share, test_bent_share)
    cfg = cfg or load_synth_config()
    root, out = Path(out), Path(out).resolve()  # resolved: "." has no name and no sibling
    _check_output_folder(out, overwrite)
    jobs = _jobs(seed, patients, test_patients, bent_share, test_bent_share)
    write_image = functools.partial(_write_image, out=out, seed=seed, size=size, cfg=cfg, test_labels=test_labels)
    counts = _write_then_publish(out, jobs, write_image, workers or os.cpu_count() or 1, progress)
    return {"root": str(root), "train": str(root / "train"), "test": str(root / "test"),
            "test_labels": str(root / TEST_LABEL_DIR) if test_labels and test_patients else None, "size": size,
            "seed": seed, "patients": patients, "test_patients": test_patients,
            "train_images": counts["train"], "test_images": counts["test"]}


def _check_arguments(patients: int, test_patients: int, seed: int, size: int, bent_share: float | None,
                     test_bent_share: float | None) -> None:
    """generate's numbers within their ranges, else a one-line error naming the argument."""
    try:
        for key, value in (("patients", patients), ("test_patients", test_patients), ("seed", seed)):
            check_range(key, value, 0)
        check_range("size", size, MIN_SIZE, MAX_SIZE)
        for key, value in (("bent_share", bent_share), ("test_bent_share", test_bent_share)):
            if value is not None:
                check_range(key, value, 0, 1)
    except ValueError as exc:
        raise CascadeError(str(exc)) from None


def _check_output_folder(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(out, "exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        # adding to an existing set would mix sizes and seeds, and overwrite images of the same name
        raise DataError(out, "output folder exists and is not empty (choose a new or empty folder)")


def _jobs(seed: int, patients: int, test_patients: int, bent_share: float | None,
          test_bent_share: float | None) -> list[_Job]:
    """Every image of the set, train patients first, each patient's right hand first."""
    bent = {"train": _bent_flags(seed, "train", 2 * patients, bent_share),
            "test": _bent_flags(seed, "test", 2 * test_patients, test_bent_share)}
    jobs = []
    for number in range(1, patients + test_patients + 1):
        split = "train" if number <= patients else "test"
        first = 2 * (number - 1 if split == "train" else number - 1 - patients)  # the patient's first image
        stems = _image_stems(seed, number, suffixed=(split == "train" and number == 1))
        jobs += [_Job(split, number, hand, stem, left, bent[split][first + hand])
                 for hand, (stem, (_, left)) in enumerate(zip(stems, _HANDS))]
    return jobs


def _write_image(job: _Job, tmp: Path, *, out: Path, seed: int, size: int, cfg: SynthConfig,
                 test_labels: bool) -> str:
    """One image (and its labels) under tmp; returns its split. A hand that cannot be placed is named by its
    path in out."""
    patient = f"ID{job.number:03d}"
    rng = _rng(seed, job.number, _STREAM_IMAGE, job.hand)  # one stream per image: any order gives the same files
    try:
        polygons, film = place_hand(rng, size, job.left, cfg, bent=job.bent)
    except CascadeError as exc:  # name the image; nothing is left in `out`
        raise DataError(out / job.split / IMAGE_DIR / patient / f"{job.stem}.png", f"not generated ({exc}); "
                                                                                   f"nothing was written") from None
    _write_png(tmp / job.split / IMAGE_DIR / patient / f"{job.stem}.png", render(polygons, size, rng, cfg, film))
    if job.split == "train" or test_labels:
        doc = _annotation_doc(polygons, job.stem, patient, rng)
        labels = tmp / "train" / LABEL_DIR if job.split == "train" else tmp / TEST_LABEL_DIR
        write_text(labels / patient / f"{job.stem}.json", json.dumps(doc))
    return job.split


def _write_then_publish(out: Path, jobs: list[_Job], write_image: Callable[[_Job, Path], str], workers: int,
                        progress: Callable[[int, int], None] | None) -> dict[str, int]:
    """Every job written into a sibling folder of out, which then takes out's place; the images per split."""
    counts = {"train": 0, "test": 0}
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:  # bounded_map waits for its threads before an error leaves it: none writes into tmp after the rmtree
        for done, split in enumerate(bounded_map(lambda job: write_image(job, tmp), jobs, workers), 1):
            counts[split] += 1
            if progress is not None:
                progress(done, len(jobs))
        if out.is_dir() and not any(out.iterdir()):
            for part in tmp.iterdir():  # into the folder itself: it may be a mount point or someone's cwd
                shutil.move(part, out / part.name)  # a mount point is another file system: rename may not do
        else:
            replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return counts
