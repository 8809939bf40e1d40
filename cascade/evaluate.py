"""Scores on held-out patients, at each image's native resolution."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from convert.classes import CARPAL_INDICES, CLASSES
from convert.dataset import EDGE_TOLERANCE, Clip, Item, iter_samples, scan
from convert.dice import dice_per_class, region_contains
from convert.folds import load_folds
from convert.images import AS_STORED
from convert.masks import class_masks
from convert.wrist_pose import TEST_BENT_SHARE, is_bent, pose_weights
from plumbing.atomic import check_output
from plumbing.errors import CascadeError, DataError

from .paste import PastePlan, largest_component


def held_out(data: str | Path, folds_file: str | Path, fold: int) -> list[Item]:
    """The labelled images whose patients form fold `fold` of the recorded split."""
    folds, k = load_folds(folds_file)
    if not 0 <= fold < k:
        raise DataError(folds_file, f"fold {fold} is not in 0..{k - 1}")
    items = scan(data).items
    unknown = sorted({i.patient for i in items} - set(folds))
    if unknown:
        raise DataError(folds_file, f"patient {unknown[0]} of {data} is not in this split")
    chosen = [i for i in items if folds[i.patient] == fold]
    if not chosen:
        raise DataError(folds_file, f"fold {fold} has no images in {data}")
    return chosen


@dataclass
class Scores:
    """Per-image, per-class Dice of each method, and the carpal-region hit record."""

    images: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    dice: dict[str, list[np.ndarray]] = field(default_factory=dict)
    hits: list[bool] = field(default_factory=list)
    bent: list[bool] = field(default_factory=list)  # per image: a bent wrist in the labels (convert.wrist_pose)
    sources: Counter = field(default_factory=Counter)
    curves: dict[int, list[np.ndarray]] = field(default_factory=dict)  # pasted class -> per image, Dice per SETTING
    clips: list[Clip] = field(default_factory=list)  # label polygons cut to their image (within the edge tolerance)
    oriented: list[str] = field(default_factory=list)  # images with an EXIF orientation tag, read as stored
    regions_of: str = ""  # whose regions `hits` and `sources` record (stage 1's or the base's), when told
    more_regions: dict[str, tuple[list[bool], Counter]] = field(default_factory=dict)  # other sources' hits, sources

    def add(self, name: str, truth: np.ndarray, predictions: dict[str, np.ndarray], region=None,
            patient: str = "") -> None:
        self.images.append(name)
        self.patients.append(patient)
        self.bent.append(is_bent(truth))
        for method, pred in predictions.items():
            self.dice.setdefault(method, []).append(dice_per_class(pred, truth))
        if region is not None:
            self.hits.append(region_contains(region, truth, CARPAL_INDICES))
            self.sources[region.source] += 1

    def note(self, sample) -> None:
        """What reading the sample's files warned about."""
        self.clips.extend(sample.clips)
        if sample.orientation != AS_STORED:
            self.oriented.append(str(sample.item.image))

    def weights(self, bent_share: float | None) -> np.ndarray:
        """Per-image weights that mix bent and straight wrists at `bent_share` (uniform: None, or one pose)."""
        return pose_weights(np.array(self.bent, bool), bent_share)

    def table(self, weights: np.ndarray | None = None) -> pd.DataFrame:
        """class x method Dice averaged over images (weighted if given), then the rows `mean` (29 classes) and
        `carpal_mean`."""
        per_class = pd.DataFrame({f"{m}_dice": np.average(v, axis=0, weights=weights) for m, v in self.dice.items()},
                                 index=list(CLASSES))
        per_class.loc["mean"] = per_class.iloc[:len(CLASSES)].mean()
        per_class.loc["carpal_mean"] = per_class.iloc[list(CARPAL_INDICES)].mean()
        per_class.index.name = "class"
        return per_class

    def markdown(self, digits: int = 4) -> str:
        return markdown_table(self.table(), digits)

    def pose_table(self, bent_share: float | None = TEST_BENT_SHARE) -> pd.DataFrame:
        """method x (mean, carpal mean) Dice on straight wrists, on bent ones, and mixed at `bent_share` bent,
        the real test set's mix (NaN where a pose has no image, and the mix then too)."""
        bent = np.array(self.bent, bool)
        mixable = bent_share is not None and 0 < bent.sum() < len(bent)
        groups = {"straight": ~bent, "bent": bent,
                  "test_mix": self.weights(bent_share) if mixable else np.zeros(len(bent))}
        carpal = list(CARPAL_INDICES)
        rows = {}
        for method, per_image in self.dice.items():
            d = np.stack(per_image)
            summaries = {"mean": d.mean(1), "carpal": d[:, carpal].mean(1)}
            rows[method] = {f"{g}_{s}": np.average(v, weights=w) if w.any() else np.nan
                            for g, w in groups.items() for s, v in summaries.items()}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "method"
        return table

    @property
    def hit_rate(self) -> float:
        return float(np.mean(self.hits)) if self.hits else float("nan")


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    lines = [f"| {table.index.name} | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |" for name, row in table.iterrows()]
    return "\n".join(lines)


THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))  # 0.1 .. 0.9: searched per pasted class
# what is searched per pasted class: a threshold, with every blob kept or only the largest
SETTINGS = tuple((t, False) for t in THRESHOLDS) + tuple((t, True) for t in THRESHOLDS)


def threshold_curve(stage1_mask: np.ndarray, probs: np.ndarray, truth: np.ndarray, region,
                    thresholds: Sequence[float] = THRESHOLDS, largest: bool = False) -> np.ndarray:
    """Dice of one class's cascade mask (stage 1 outside the region, stage 2's `probs >= t` inside, its largest
    blob if `largest`, as `paste` builds it) for each threshold t, by counting: no full mask is built."""
    return settings_curve(stage1_mask, probs, truth, region, [(t, largest) for t in thresholds])


def settings_curve(stage1_mask: np.ndarray, probs: np.ndarray, truth: np.ndarray, region,
                   settings: Sequence[tuple[float, bool]] = SETTINGS) -> np.ndarray:
    """threshold_curve for each (threshold, largest blob) setting; the counts outside the region once."""
    ys, xs = region.slices
    first, truth = stage1_mask.astype(bool, copy=False), truth.astype(bool, copy=False)
    first_in, truth_in = first[ys, xs], truth[ys, xs]
    inter_out = np.count_nonzero(first & truth) - np.count_nonzero(first_in & truth_in)
    pred_out, true_all = np.count_nonzero(first) - np.count_nonzero(first_in), np.count_nonzero(truth)
    curve = []
    for t, largest in settings:
        inside = largest_component(probs >= t) if largest else probs >= t
        total = pred_out + np.count_nonzero(inside) + true_all
        curve.append(2 * (inter_out + np.count_nonzero(inside & truth_in)) / total if total else 1.0)
    return np.array(curve)


@dataclass(frozen=True)
class Tuning:
    chosen: dict[int, object]           # per pasted class, the setting chosen on all held-out images
    cross_fitted: dict[int, np.ndarray]  # per pasted class, per image: Dice at the setting chosen on the
    #                                      other half of the patients, an honest estimate of the tuned cascade


def tune_thresholds(scores: Scores, settings: Sequence = SETTINGS, weights: np.ndarray | None = None) -> Tuning | None:
    """Per pasted class, the setting (scores.curves holds a Dice per image and setting) with the best mean
    held-out Dice (weighted per image if given). Choosing it on the images it is scored on would flatter it, so
    the reported figure is cross-fitted: the patients are split in two halves and each half is scored at the
    setting the other half chose. None with fewer than two patients."""
    patients = sorted(set(scores.patients))
    if len(patients) < 2 or not scores.curves:
        return None
    half = {p: k % 2 for k, p in enumerate(patients)}
    group = np.array([half[p] for p in scores.patients])
    w = np.full(len(group), 1.0) if weights is None else np.asarray(weights, np.float64)
    chosen, cross = {}, {}
    for c, curves in scores.curves.items():
        dice = np.stack(curves)  # (images, settings)
        chosen[c] = settings[int(np.argmax(w @ dice))]
        cross[c] = np.empty(len(dice))
        for g in (0, 1):
            k = int(np.argmax(w[group != g] @ dice[group != g]))
            cross[c][group == g] = dice[group == g, k]
    return Tuning(chosen, cross)


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
    items = {fold: held_out(data, folds_file, fold) for fold in folds}
    full_hand = _checked_base(base, items, folds_file)
    total, done, scores, candidates = sum(len(v) for v in items.values()), 0, Scores(), None
    for fold, stage1, stage2 in runs:
        model = Cascade(stage1, stage2, device=device, tta_hflip=tta_hflip, conf=conf, base=full_hand)
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
    from .pipeline import paths_of

    if not runs or len(set(folds)) != len(folds):
        raise CascadeError(f"each fold is evaluated once: got folds {folds}")
    if len({s2 is None for _, _, s2 in runs}) > 1:
        raise CascadeError("give a stage 2 checkpoint for every fold or for none")
    for _, stage1, stage2 in runs:
        if stage1 is None and base is None:
            raise CascadeError("give stage 1 weights for every fold, or a base submission")
        for path in paths_of(stage1 or []) + (paths_of(stage2) if stage2 is not None else []):
            if not Path(path).is_file():
                raise DataError(path, "model file not found")
    from stage1_detect.safe_load import check_stage1_file

    for _, stage1, _ in runs:  # every fold's, before the first fold is scored (ultralytics would run their code)
        for path in paths_of(stage1 or []):
            check_stage1_file(path)


def _checked_base(base, items: dict, folds_file):
    """The base submission, checked to hold every held-out image; None without one."""
    from convert.base_submission import BaseSubmission

    if base is None:
        return None
    full_hand = BaseSubmission(base)
    for fold, fold_items in items.items():
        full_hand.check_names([i.name for i in fold_items], f"fold {fold} of {folds_file}")
    return full_hand


def _candidates(model, candidates: PastePlan | None, stage2) -> PastePlan | None:
    """The classes stage 2 may paste: the first fold's checkpoint's, which every later fold's must match."""
    from .pipeline import paths_of

    if model.stage2 is None:
        return candidates
    if candidates is not None and model.plan.classes != candidates.classes:
        names = ", ".join(map(str, paths_of(stage2)))
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


def choose_plan(scores: Scores, candidates: PastePlan, bent_share: float | None = TEST_BENT_SHARE,
                reference: str = "stage1") -> PastePlan:
    """The candidate classes whose held-out Dice the cascade raised over the `reference` method (stage 1, or
    the base submission), each at its tuned setting
    (threshold, and whether to keep only its largest blob); images weighed to `bent_share` bent wrists. With two
    or more patients, adds the cross-fitted `cascade_tuned` column to `scores` and decides on it; else decides
    on `cascade` at the candidates' own settings. scores.curves must follow SETTINGS."""
    weights = scores.weights(bent_share)
    tuning = tune_thresholds(scores, weights=weights)
    thresholds, largest, column = candidates.thresholds, set(candidates.largest or ()), "cascade_dice"
    if tuning is not None:
        tuned = [d.copy() for d in scores.dice["cascade"]]
        for c, per_image in tuning.cross_fitted.items():
            for d, v in zip(tuned, per_image):
                d[c] = v
        scores.dice["cascade_tuned"] = tuned
        thresholds = {**thresholds, **{c: t for c, (t, _) in tuning.chosen.items()}}
        largest = (largest - set(tuning.chosen)) | {c for c, (_, keep) in tuning.chosen.items() if keep}
        column = "cascade_tuned_dice"
    table = scores.table(weights)
    raised = tuple(c for c in candidates.classes if table[column].iloc[c] > table[f"{reference}_dice"].iloc[c])
    return PastePlan(raised, {c: thresholds[c] for c in raised}, tuple(c for c in raised if c in largest))


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

    codes = {}
    for method, path in submissions.items():
        # the format is checked here; each mask's bounds when it is decoded at its image's size below
        report = validate_submission(path, default_hw=(2**31, 1))
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
    any scoring; errors name the command's options."""
    folds = tuple(folds) or (0,)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise CascadeError(f"{out}: expected a folder for the report")
    check_output(out / "dice.csv", [submission, base])
    from .report import check_report_folder

    check_report_folder(out)  # before the scoring, not after it
    if submission is not None and (stage1 or stage2 or tta or base):
        raise CascadeError("--submission scores a CSV: drop --stage1, --stage2, --base and --tta, or drop "
                           "--submission")
    if labels is not None and (submission is None or folds_file is not None):
        raise CascadeError("--labels scores a --submission of every image it names: give --submission, and "
                           "drop --folds")
    if submission is not None:
        items = [i for f in folds for i in held_out(data, folds_file, f)] if folds_file else None
        return Evaluation(score_submission(submission, data, items, edge_tolerance=edge_tolerance, labels=labels),
                          None, bent_share)
    if (not stage1 and base is None) or folds_file is None:
        raise CascadeError("--stage1 (or --base) and --folds are required (or --submission to score a CSV)")
    if base is not None and not stage2:
        raise CascadeError("--base is scored with stage 2 pasted over it: give --stage2 (or score the base "
                           "alone with --submission)")
    if len(stage1) not in ((0, len(folds)) if base is not None else (len(folds),)) \
            or len(stage2) not in (0, len(folds)):
        raise CascadeError(f"{len(folds)} fold(s) need as many --stage1 (got {len(stage1)}"
                           f"{'; or none with --base' if base is not None else ''}) and --stage2 "
                           f"(got {len(stage2)}; or none), in the order of the folds")
    runs = list(zip(folds, stage1 or [None] * len(folds), stage2 or [None] * len(folds)))
    scores, plan = evaluate_folds(data, folds_file, runs, device=device, tta_hflip=tta, progress=progress,
                                  bent_share=bent_share, base=base, edge_tolerance=edge_tolerance)
    return Evaluation(scores, plan, bent_share)

