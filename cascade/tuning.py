"""What `cascade evaluate` chooses from its scores: per pasted class a threshold and whether to keep only the
largest blob, and which classes to paste at all (the paste plan)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from convert.wrist_pose import TEST_BENT_SHARE

from .paste import PastePlan, largest_component
from .scores import Scores

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

    def tuned_dice(self, cascade: list[np.ndarray]) -> list[np.ndarray]:
        """The cascade's per-image, per-class Dice with each tuned class's cross-fitted Dice in its place."""
        tuned = [d.copy() for d in cascade]
        for c, per_image in self.cross_fitted.items():
            for d, v in zip(tuned, per_image):
                d[c] = v
        return tuned

    def applied_to(self, plan: PastePlan) -> PastePlan:
        """`plan` with each tuned class at its chosen (threshold, largest blob) setting."""
        thresholds = {**plan.thresholds, **{c: t for c, (t, _) in self.chosen.items()}}
        largest = (set(plan.largest or ()) - set(self.chosen)) | {c for c, (_, keep) in self.chosen.items() if keep}
        return PastePlan(plan.classes, thresholds, tuple(c for c in plan.classes if c in largest))


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


def choose_plan(scores: Scores, candidates: PastePlan, bent_share: float | None = TEST_BENT_SHARE,
                reference: str = "stage1") -> PastePlan:
    """The candidate classes whose held-out Dice the cascade raised over the `reference` method (stage 1, or
    the base submission), each at its tuned setting (threshold, and whether to keep only its largest blob);
    images weighed to `bent_share` bent wrists. With two or more patients, adds the cross-fitted
    `cascade_tuned` column to `scores` and decides on it; else decides on `cascade` at the candidates' own
    settings. scores.curves must follow SETTINGS."""
    weights = scores.weights(bent_share)
    tuning = tune_thresholds(scores, weights=weights)
    settings, column = candidates, "cascade_dice"
    if tuning is not None:
        scores.dice["cascade_tuned"] = tuning.tuned_dice(scores.dice["cascade"])
        settings, column = tuning.applied_to(candidates), "cascade_tuned_dice"
    table = scores.table(weights)
    raised = tuple(c for c in candidates.classes if table[column].iloc[c] > table[f"{reference}_dice"].iloc[c])
    largest = set(settings.largest or ())
    return PastePlan(raised, {c: settings.thresholds[c] for c in raised}, tuple(c for c in raised if c in largest))
