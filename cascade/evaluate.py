"""Scores on held-out patients, at each image's native resolution."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from convert.classes import CARPAL_INDICES, CLASSES
from convert.dataset import Item, iter_samples, scan
from convert.errors import DataError
from convert.folds import load_folds
from convert.masks import class_masks
from convert.metrics import dice_per_class, region_contains

from .paste import PastePlan


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
    sources: Counter = field(default_factory=Counter)
    curves: dict[int, list[np.ndarray]] = field(default_factory=dict)  # pasted class -> per image Dice per threshold

    def add(self, name: str, truth: np.ndarray, predictions: dict[str, np.ndarray], region=None,
            patient: str = "") -> None:
        self.images.append(name)
        self.patients.append(patient)
        for method, pred in predictions.items():
            self.dice.setdefault(method, []).append(dice_per_class(pred, truth))
        if region is not None:
            self.hits.append(region_contains(region, truth, CARPAL_INDICES))
            self.sources[region.source] += 1

    def table(self) -> pd.DataFrame:
        """class x method mean Dice over images, then the rows `mean` (29 classes) and `carpal_mean`."""
        per_class = pd.DataFrame({f"{m}_dice": np.mean(v, axis=0) for m, v in self.dice.items()}, index=list(CLASSES))
        per_class.loc["mean"] = per_class.iloc[:len(CLASSES)].mean()
        per_class.loc["carpal_mean"] = per_class.iloc[list(CARPAL_INDICES)].mean()
        per_class.index.name = "class"
        return per_class

    def markdown(self, digits: int = 4) -> str:
        table = self.table()
        lines = ["| class | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |" for name, row in table.iterrows()]
        return "\n".join(lines)

    @property
    def hit_rate(self) -> float:
        return float(np.mean(self.hits)) if self.hits else float("nan")


THRESHOLDS = tuple(round(0.1 + 0.05 * k, 2) for k in range(17))  # 0.1 .. 0.9: searched per pasted class


def threshold_curve(stage1_mask: np.ndarray, probs: np.ndarray, truth: np.ndarray, region,
                    thresholds: Sequence[float] = THRESHOLDS) -> np.ndarray:
    """Dice of one class's cascade mask (stage 1 outside the region, stage 2's `probs >= t` inside, as `paste`
    builds it) for each threshold t, by counting: no mask is built per threshold."""
    ys, xs = region.slices
    first, truth = stage1_mask.astype(bool, copy=False), truth.astype(bool, copy=False)
    first_in, truth_in = first[ys, xs], truth[ys, xs]
    inter_out = np.count_nonzero(first & truth) - np.count_nonzero(first_in & truth_in)
    pred_out, true_all = np.count_nonzero(first) - np.count_nonzero(first_in), np.count_nonzero(truth)
    curve = []
    for t in thresholds:
        inside = probs >= t
        total = pred_out + np.count_nonzero(inside) + true_all
        curve.append(2 * (inter_out + np.count_nonzero(inside & truth_in)) / total if total else 1.0)
    return np.array(curve)


@dataclass(frozen=True)
class Tuning:
    thresholds: dict[int, float]        # per pasted class, chosen on all held-out images
    cross_fitted: dict[int, np.ndarray]  # per pasted class, per image: Dice at the threshold chosen on the
    #                                      other half of the patients, an honest estimate of the tuned cascade


def tune_thresholds(scores: Scores, thresholds: Sequence[float] = THRESHOLDS) -> Tuning | None:
    """Per pasted class, the threshold with the best mean held-out Dice. Choosing it on the images it is scored
    on would flatter it, so the reported figure is cross-fitted: the patients are split in two halves and each
    half is scored at the threshold the other half chose. None with fewer than two patients."""
    patients = sorted(set(scores.patients))
    if len(patients) < 2 or not scores.curves:
        return None
    half = {p: k % 2 for k, p in enumerate(patients)}
    group = np.array([half[p] for p in scores.patients])
    chosen, cross = {}, {}
    for c, curves in scores.curves.items():
        dice = np.stack(curves)  # (images, thresholds)
        chosen[c] = float(thresholds[int(np.argmax(dice.mean(0)))])
        cross[c] = np.empty(len(dice))
        for g in (0, 1):
            k = int(np.argmax(dice[group != g].mean(0)))
            cross[c][group == g] = dice[group == g, k]
    return Tuning(chosen, cross)


def evaluate_cascade(data: str | Path, folds_file: str | Path, fold: int, stage1: str | Path,
                     stage2: str | Path | None, device: str | None = None, batch: int = 4, tta_hflip: bool = False,
                     conf: float | None = None, progress: Callable[[int, int], None] | None = None) -> tuple[Scores, PastePlan | None]:
    """Stage 1 alone and the cascade (stage 2 pasted for the checkpoint's classes at its thresholds) on the
    held-out patients; with two or more patients also `cascade_tuned`, each pasted class at its tuned threshold
    (cross-fitted, see tune_thresholds). The plan returned pastes only the classes whose Dice the cascade raised
    on this fold (tuned where tuned), at the tuned thresholds. With stage2=None, stage 1 alone and no plan."""
    from .pipeline import Cascade

    items = held_out(data, folds_file, fold)
    model = Cascade(stage1, stage2, device=device, tta_hflip=tta_hflip, conf=conf)
    scores = Scores()
    channel = {c: j for j, c in enumerate(model.stage2.train_classes)} if model.stage2 is not None else {}
    done = 0
    for start in range(0, len(items), batch):
        samples = list(iter_samples(items[start:start + batch]))
        for sample, out in zip(samples, model.run([s.image for s in samples])):
            truth = class_masks(sample.polygons, sample.hw)
            predictions = {"stage1": out.stage1_masks}
            if model.stage2 is not None:
                predictions["cascade"] = model.final_masks(out, copy=True)
                for c in model.plan.classes:
                    scores.curves.setdefault(c, []).append(
                        threshold_curve(out.stage1_masks[c], out.probs[channel[c]], truth[c], out.region))
            scores.add(sample.item.name, truth, predictions, out.region, patient=sample.item.patient)
        done += len(samples)
        if progress:
            progress(done, len(items))
    if model.stage2 is None:
        return scores, None
    tuning = tune_thresholds(scores)
    thresholds, column = model.plan.thresholds, "cascade_dice"
    if tuning is not None:
        tuned = [d.copy() for d in scores.dice["cascade"]]
        for c, per_image in tuning.cross_fitted.items():
            for d, v in zip(tuned, per_image):
                d[c] = v
        scores.dice["cascade_tuned"] = tuned
        thresholds, column = {**thresholds, **tuning.thresholds}, "cascade_tuned_dice"
    table = scores.table()
    raised = tuple(c for c in model.plan.classes if table[column].iloc[c] > table["stage1_dice"].iloc[c])
    return scores, PastePlan(raised, {c: thresholds[c] for c in raised})


def score_submission(submission: str | Path, data: str | Path, items: list[Item] | None = None) -> Scores:
    """Dice of an existing submission CSV against the labels of the images it names."""
    from convert.rle import decode
    from convert.submission import read_submission, validate_submission

    # the format is checked here; each mask's bounds when it is decoded at its image's size below
    report = validate_submission(submission, default_hw=(2**31, 1))
    if not report.ok:
        raise DataError(submission, f"not a valid submission: {report.problems[0]}")
    df = read_submission(submission)
    by_name = {i.name: i for i in (items if items is not None else scan(data).items)}
    missing = sorted(set(df["image_name"]) - set(by_name))
    if missing:
        raise DataError(submission, f"image {missing[0]} has no labels in {data}")
    scores = Scores()
    for name, group in df.groupby("image_name", sort=True):
        sample = next(iter_samples([by_name[name]]))
        try:
            pred = np.stack([decode(code, sample.hw) for code in group["rle"]])
        except ValueError as exc:
            raise DataError(submission, f"{name}: {exc}") from None
        scores.add(name, class_masks(sample.polygons, sample.hw), {"submission": pred})
    return scores
