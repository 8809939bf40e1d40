"""`cascade evaluate`'s scoring: held-out patients scored at each image's native resolution, by each fold's
models (the paste plan then chosen by tuning) or from a submission file."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from convert.dataset import EDGE_TOLERANCE, Item, iter_samples, scan
from convert.folds import load_folds
from convert.masks import class_masks
from convert.wrist_pose import TEST_BENT_SHARE
from plumbing.atomic import atomic_dir, check_output
from plumbing.errors import CascadeError, DataError

from .paste import PastePlan
from .report import check_report_folder, write_tables
from .scores import Scores
from .tuning import choose_plan, settings_curve


def held_out(data: str | Path, folds_file: str | Path, fold: int) -> list[Item]:
    """The labelled images whose patients form fold `fold` of the recorded split."""
    return held_out_folds(data, folds_file, [fold])[fold]


def held_out_folds(data: str | Path, folds_file: str | Path, folds: Sequence[int]) -> dict[int, list[Item]]:
    """Per fold, the labelled images whose patients form it in the recorded split: `data` scanned once."""
    split, k = load_folds(folds_file)
    for fold in folds:
        if not 0 <= fold < k:
            raise DataError(folds_file, f"fold {fold} is not in 0..{k - 1}")
    items = scan(data).items
    unknown = sorted({i.patient for i in items} - set(split))
    if unknown:
        raise DataError(folds_file, f"patient {unknown[0]} of {data} is not in this split")
    chosen = {fold: [i for i in items if split[i.patient] == fold] for fold in folds}
    for fold, fold_items in chosen.items():
        if not fold_items:
            raise DataError(folds_file, f"fold {fold} has no images in {data}")
    return chosen


def evaluate_cascade(data: str | Path, folds_file: str | Path, fold: int, stage1: str | Path | None,
                     stage2: str | Path | None, **kwargs) -> tuple[Scores, PastePlan | None]:
    """One fold's held-out patients scored by that fold's models: evaluate_folds with one fold."""
    return evaluate_folds(data, folds_file, [(fold, stage1, stage2)], **kwargs)


def evaluate_folds(data: str | Path, folds_file: str | Path,
                   runs: Sequence[tuple[int, str | Path | Sequence, str | Path | Sequence | None]],
                   device: str | None = None,
                   batch: int = 4, tta_hflip: bool = False, conf: float | None = None,
                   progress: Callable[[int, int], None] | None = None,
                   bent_share: float | None = TEST_BENT_SHARE,
                   base: str | Path | None = None,
                   edge_tolerance: float = EDGE_TOLERANCE) -> tuple[Scores, PastePlan | None]:
    """Stage 1 alone and the cascade (stage 2 pasted for the checkpoint's classes at its thresholds), each
    `(fold, stage1, stage2)` run on the held-out patients of its own fold, pooled: with every fold, every
    labelled image is scored by models that never saw its patient (out-of-fold), and the choices below rest on
    k times more images than one fold gives. With two or more patients also `cascade_tuned`, each pasted class at
    its tuned threshold (cross-fitted, see tune_thresholds). The plan returned pastes only the classes whose Dice
    the cascade raised (tuned where tuned), at the tuned thresholds. Both choices average the images with bent
    and straight wrists mixed at `bent_share` (the test set's mix; None: a plain mean), so a swap that helps the
    straight wrists of the training distribution but hurts bent ones is not shipped to a test set of mostly
    bent wrists. Without stage 2 (every run's stage2 None), stage 1 alone and no plan. A run's stage1 or stage2
    may be a list, an ensemble (see Cascade), scored honestly only if none of its members saw the fold.
    With `base` (any full-hand model's submission holding at least the folds' images) the base takes stage 1's
    place: methods `base` and `cascade` (stage 2 over the base), the plan chosen against the base, and a run's
    stage1 (None allowed) only finds the carpal region."""
    from .pipeline import Cascade

    reference = "stage1" if base is None else "base"
    folds = [fold for fold, _, _ in runs]
    _check_runs(runs, folds, base)
    items = held_out_folds(data, folds_file, folds)
    base_rows = _checked_base(base, items, folds_file)
    total, done, scores, candidates = sum(len(v) for v in items.values()), 0, Scores(), None
    for fold, stage1, stage2 in runs:
        model = Cascade(stage1, stage2, device=device, tta_hflip=tta_hflip, conf=conf, base=base_rows)
        candidates = _candidates(model, candidates, stage2)
        for start in range(0, len(items[fold]), batch):
            samples = list(iter_samples(items[fold][start:start + batch], edge_tolerance=edge_tolerance))
            _score_batch(model, samples, scores, reference)
            done += len(samples)
            if progress:
                progress(done, total)
        del model  # one fold's networks in memory at a time
    if candidates is None:
        return scores, None
    return scores, choose_plan(scores, candidates, bent_share, reference)


def _check_runs(runs, folds: list[int], base) -> None:
    """Every fold's files before the first fold's long scoring."""
    from .pipeline import path_list

    if not runs or len(set(folds)) != len(folds):
        raise CascadeError(f"each fold is evaluated once: got folds {folds}")
    if len({s2 is None for _, _, s2 in runs}) > 1:
        raise CascadeError("give a stage 2 checkpoint for every fold or for none")
    for _, stage1, stage2 in runs:
        if stage1 is None and base is None:
            raise CascadeError("give stage 1 weights for every fold, or a base submission")
        for path in path_list(stage1 or []) + (path_list(stage2) if stage2 is not None else []):
            if not Path(path).is_file():
                raise DataError(path, "model file not found")
    from stage1_detect.safe_load import check_stage1_file

    for _, stage1, _ in runs:  # every fold's, before the first fold is scored (ultralytics would run their code)
        for path in path_list(stage1 or []):
            check_stage1_file(path)


def _checked_base(base, items: dict, folds_file):
    """The base submission, checked to hold every held-out image; None without one."""
    from convert.submission_rows import SubmissionRows

    if base is None:
        return None
    base_rows = SubmissionRows(base)
    for fold, fold_items in items.items():
        base_rows.check_names([i.name for i in fold_items], f"fold {fold} of {folds_file}")
    return base_rows


def _candidates(model, candidates: PastePlan | None, stage2) -> PastePlan | None:
    """The classes stage 2 may paste: the first fold's checkpoint's, which every later fold's must match."""
    from .pipeline import path_list

    if model.stage2 is None:
        return candidates
    if candidates is not None and model.plan.classes != candidates.classes:
        names = ", ".join(map(str, path_list(stage2)))
        raise CascadeError(f"{names}: pastes other classes than the first fold's checkpoint")
    return candidates or model.plan


def _score_batch(model, samples: list, scores: Scores, reference: str) -> None:
    """The reference method and the cascade scored on one batch, with each pasted class's settings curve."""
    outs = model.run([s.image for s in samples], [s.item.name for s in samples])
    for sample, out in zip(samples, outs):
        truth = class_masks(sample.polygons, sample.hw)
        predictions = {reference: out.full_masks}
        if model.stage2 is not None:
            predictions["cascade"] = model.final_masks(out, copy=True)
            channel = {c: j for j, c in enumerate(out.prob_classes)}
            for c in model.plan.classes:
                scores.curves.setdefault(c, []).append(
                    settings_curve(out.full_masks[c], out.probs[channel[c]], truth[c], out.region))
        scores.add(sample.item.name, truth, predictions, out.region, patient=sample.item.patient)
        scores.note(sample)


def score_submission(submission: str | Path, data: str | Path, items: list[Item] | None = None,
                     edge_tolerance: float = EDGE_TOLERANCE, labels: str | Path | None = None) -> Scores:
    """Dice of an existing submission CSV against the labels of the images it names (data's outputs_json, or
    `labels` kept apart): score_submissions with one file, its method named `submission`."""
    return score_submissions({"submission": submission}, data, items, edge_tolerance, labels)


def score_submissions(submissions: dict[str, str | Path], data: str | Path, items: list[Item] | None = None,
                      edge_tolerance: float = EDGE_TOLERANCE, labels: str | Path | None = None) -> Scores:
    """Each named submission CSV's Dice on the same images (those the first names; every other must name the
    same), side by side, against their labels: the methods of one table, each image read once."""
    from convert.rle import decode
    from convert.submission import read_submission, validate_submission
    from convert.submission_rows import UNBOUNDED_HW

    codes = {}
    for method, path in submissions.items():
        # the format is checked here; each mask's bounds when it is decoded at its image's size below
        report = validate_submission(path, default_hw=UNBOUNDED_HW)
        if not report.ok:
            raise DataError(path, f"not a valid submission: {report.problems[0]}")
        codes[method] = {name: list(group["rle"]) for name, group in read_submission(path).groupby("image_name")}
    first, *others = submissions
    names = sorted(codes[first])
    for method in others:
        if sorted(codes[method]) != names:
            odd = sorted(set(codes[method]) ^ set(names))[0]
            raise DataError(submissions[method], f"does not name the same images as {submissions[first]} "
                                                 f"(e.g. {odd})")
    by_name = {i.name: i for i in (items if items is not None else scan(data, labels=labels).items)}
    missing = [name for name in names if name not in by_name]
    if missing:
        among = (f"the held-out images of the folds asked for in {data}" if items is not None else
                 str(labels) if labels is not None else str(data))
        raise DataError(submissions[first], f"image {missing[0]} has no labels among {among}")
    scores = Scores()
    samples = iter_samples([by_name[name] for name in names], workers=os.cpu_count() or 1,  # decoded on threads
                           edge_tolerance=edge_tolerance)
    for name, sample in zip(names, samples):
        predictions = {}
        for method, by_image in codes.items():
            try:
                predictions[method] = np.stack([decode(code, sample.hw) for code in by_image[name]])
            except ValueError as exc:
                raise DataError(submissions[method], f"{name}: {exc}") from None
        scores.add(name, class_masks(sample.polygons, sample.hw), predictions, patient=sample.item.patient)
        scores.note(sample)
    return scores


@dataclass(frozen=True)
class Evaluation:
    """What `cascade evaluate` reports: the scores, the paste plan (None without stage 2) and the bent-wrist
    share both were weighed to."""

    scores: Scores
    plan: PastePlan | None
    bent_share: float | None

    def save(self, out: str | Path, title: str = "") -> dict[str, Path]:
        """The report folder, whole or not at all (written beside `out`, then swapped in: a failure midway
        leaves the previous report as it was): paste.json with a plan, and report's tables. A report without a
        plan so leaves no paste.json of an earlier run behind."""
        out = Path(out)
        check_report_folder(out)
        with atomic_dir(out) as folder:
            plan = self._save_plan(folder)
            paths = write_tables(self.scores, folder, self.plan, title, self.bent_share)
        return {key: out / path.name for key, path in {**paths, **plan}.items()}

    def _save_plan(self, folder: Path) -> dict[str, Path]:
        if self.plan is None:
            return {}
        over = "the base submission" if "base" in self.scores.dice else "stage 1"
        self.plan.save(folder / "paste.json", note=f"classes whose Dice stage 2 raised over {over} on the held-out "
                                                   "fold, with the settings (threshold, largest blob) that scored "
                                                   "best there")
        return {"paste": folder / "paste.json"}


def check_combination(folds: Sequence[int], folds_file, stage1: Sequence, stage2: Sequence, submission, labels,
                      base, tta: bool, name: Callable[[str], str] = str) -> None:
    """run_evaluation's parameters that only work together (presence and counts, not values); a ValueError
    spelling each parameter with `name` (the command passes its flags' spelling)."""
    n = name
    if submission is not None and (stage1 or stage2 or tta or base is not None):
        raise ValueError(f"{n('submission')} scores a CSV: drop {n('stage1')}, {n('stage2')}, {n('base')} and "
                         f"{n('tta')}, or drop {n('submission')}")
    if labels is not None and (submission is None or folds_file is not None):
        raise ValueError(f"{n('labels')} scores a {n('submission')} of every image it names: give "
                         f"{n('submission')}, and drop {n('folds_file')}")
    if len(set(folds)) != len(folds):
        raise ValueError(f"each {n('fold')} once: got {', '.join(map(str, folds))}")
    if submission is not None:
        return
    if (not stage1 and base is None) or folds_file is None:
        raise ValueError(f"{n('stage1')} (or {n('base')}) and {n('folds_file')} are required (or "
                         f"{n('submission')} to score a CSV)")
    if base is not None and not stage2:
        raise ValueError(f"{n('base')} is scored with stage 2 pasted over it: give {n('stage2')} (or score the "
                         f"base alone with {n('submission')})")
    k = len(folds)
    if len(stage1) not in ((0, k) if base is not None else (k,)) or len(stage2) not in (0, k):
        raise ValueError(f"{k} {n('fold')}(s) need as many {n('stage1')} (got {len(stage1)}"
                         f"{'; or none with ' + n('base') if base is not None else ''}) and {n('stage2')} "
                         f"(got {len(stage2)}; or none), in the order of the folds")


def run_evaluation(data: str | Path, out: str | Path, folds_file: str | Path | None = None,
                   folds: Sequence[int] = (), stage1: Sequence[Path | list[Path]] = (),
                   stage2: Sequence[Path | list[Path]] = (),
                   submission: str | Path | None = None, labels: str | Path | None = None,
                   base: str | Path | None = None, device: str | None = None,
                   tta: bool = False, bent_share: float | None = TEST_BENT_SHARE,
                   edge_tolerance: float = EDGE_TOLERANCE,
                   progress: Callable[[int, int], None] | None = None) -> Evaluation:
    """`cascade evaluate` with its options as plain values: the submission scored (score_submission), or each
    fold's models (evaluate_folds), one stage1 / stage2 per fold in the order of `folds` (default fold 0), each
    one model or an ensemble (a list). The combination is checked, and `out` (the report folder), before
    any scoring (a ValueError naming the parameters; the command checks its flags before calling)."""
    folds = tuple(folds) or (0,)
    check_combination(folds, folds_file, stage1, stage2, submission, labels, base, tta)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CascadeError(f"{out}: expected a folder for the report")
    check_output(out / "dice.csv", [submission, base])
    check_report_folder(out)  # before the scoring, not after it
    if submission is not None:
        by_fold = held_out_folds(data, folds_file, folds) if folds_file else None
        items = [i for f in folds for i in by_fold[f]] if by_fold else None
        return Evaluation(score_submission(submission, data, items, edge_tolerance=edge_tolerance, labels=labels),
                          None, bent_share)
    runs = list(zip(folds, stage1 or [None] * len(folds), stage2 or [None] * len(folds)))
    scores, plan = evaluate_folds(data, folds_file, runs, device=device, tta_hflip=tta, progress=progress,
                                  bent_share=bent_share, base=base, edge_tolerance=edge_tolerance)
    return Evaluation(scores, plan, bent_share)

