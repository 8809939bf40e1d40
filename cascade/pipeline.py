"""The cascade on decoded images: a full-hand prediction (stage 1's, or a base submission's), stage 2 on its
carpal region, pasted back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from convert.carpal_region import Region, RegionConfig, carpal_region
from convert.rle import union_boxes
from convert.submission_rows import SubmissionRows
from plumbing.errors import CascadeError

from .paste import PastePlan, paste


@dataclass
class CascadeOutput:
    full_masks: np.ndarray        # (29, H, W) uint8: the full-hand prediction (stage 1's or the base's)
    region: Region
    probs: np.ndarray | None      # (len(prob_classes), h, w) stage 2 probabilities in the region, or None
    prob_classes: tuple[int, ...] = ()  # the class of each channel of probs: the plan's, in train_classes order
    boxes: np.ndarray | None = None     # (29, 4) x0, y0, x1, y1 holding each class of full_masks; None: not known


class Cascade:
    """Every model loaded once. The full-hand prediction is stage 1's, or with `base` a submission's masks
    (any full-hand model's); the carpal region is stage 1's when stage 1 is given, else found on the base's
    masks by stage 2's region rule (its fallbacks included). `stage2_checkpoint=None` gives the full-hand
    prediction alone. A list of several weights (or checkpoints) makes that stage an ensemble
    (cascade.ensemble): stage 1 votes, stage 2 averages."""

    def __init__(self, stage1_weights: str | Path | Sequence[str | Path] | None,
                 stage2_checkpoint: str | Path | Sequence[str | Path] | None = None,
                 device: str | None = None, plan: PastePlan | None = None, tta_hflip: bool = False,
                 conf: float | None = None, base: SubmissionRows | None = None):
        from stage1_detect.predict import Stage1Model

        from .ensemble import Stage1Vote, Stage2Mean

        self.base, self.stage1, self.stage2 = base, None, None
        stage1_models = [Stage1Model(w, device=device, conf=conf) for w in path_list(stage1_weights or [])]
        if stage1_models:
            self.stage1 = stage1_models[0] if len(stage1_models) == 1 else Stage1Vote(stage1_models)
        elif base is None:
            raise CascadeError("the cascade needs stage 1 weights or a base submission")
        self.tta_hflip = tta_hflip
        if stage2_checkpoint is not None and path_list(stage2_checkpoint):
            from stage2_segment.predict import Stage2Model

            stage2_models = [Stage2Model(c, device=device) for c in path_list(stage2_checkpoint)]
            self.stage2 = stage2_models[0] if len(stage2_models) == 1 else Stage2Mean(stage2_models)
            if self.stage1 is not None:
                # crop exactly as stage 2 was trained to see crops; the fallback prior stays stage 1's own
                self.stage1.region_cfg = replace(self.stage2.region_cfg, prior=self.stage1.region_cfg.prior)
            checkpoint_plan = PastePlan.of_checkpoint(self.stage2)
            if plan is not None:
                plan.check(self.stage2.train_classes, path_list(stage2_checkpoint)[0])
            self.plan = checkpoint_plan if plan is None else plan.with_defaults(checkpoint_plan)
        else:
            self.plan = PastePlan((), {})

    def run(self, images: Sequence[np.ndarray], names: Sequence[str] | None = None) -> list[CascadeOutput]:
        """`names` (the images' file names) find their rows in the base submission, when there is one."""
        if self.base is None:
            stage1_out = self.stage1.predict(images)
            full, regions = [o.masks for o in stage1_out], [o.region for o in stage1_out]
            boxes = [getattr(o, "boxes", None) for o in stage1_out]
        else:
            if names is None or len(names) != len(images):
                raise ValueError("a base submission needs the images' names")
            full = [self.base.masks(n, im.shape[:2]) for n, im in zip(names, images)]
            boxes = [self.base.boxes(n, im.shape[:2]) for n, im in zip(names, images)]
            if self.stage1 is not None:
                regions = [o.region for o in self.stage1.predict(images)]
            else:
                rule = self.stage2.region_cfg if self.stage2 is not None else RegionConfig()
                regions = [carpal_region(m, rule) for m in full]
        probs, kept = self.stage2_probs(images, regions, full)
        return [CascadeOutput(m, r, p, kept, b) for m, r, p, b in zip(full, regions, probs, boxes)]

    def stage2_probs(self, images: Sequence[np.ndarray], regions: Sequence[Region],
                     full: Sequence[np.ndarray] | None = None) -> tuple[list, tuple[int, ...]]:
        """Stage 2's probabilities of the plan's classes only (all that is pasted comes back from the device),
        and the class of each channel; Nones without stage 2 or a plan. `full`: the full-hand masks the
        probabilities will be pasted over, which a prior model sees."""
        if self.stage2 is None or not self.plan.classes:
            return [None] * len(images), ()
        wanted = set(self.plan.classes)
        channels = [j for j, c in enumerate(self.stage2.train_classes) if c in wanted]
        probs = self.stage2.predict(images, regions, tta_hflip=self.tta_hflip, channels=channels, full=full)
        return probs, tuple(self.stage2.train_classes[j] for j in channels)

    def final_masks(self, out: CascadeOutput, plan: PastePlan | None = None, copy: bool = False) -> np.ndarray:
        """The submission's masks: the full-hand prediction with stage 2 pasted for the plan's classes (in place
        unless copy)."""
        masks = out.full_masks.copy() if copy else out.full_masks
        plan = plan or self.plan
        if out.probs is not None and plan.classes:
            paste(masks, out.probs, out.region, out.prob_classes, plan)
        return masks

    def final_boxes(self, out: CascadeOutput, plan: PastePlan | None = None) -> np.ndarray | None:
        """Boxes holding each class of final_masks: the full-hand prediction's, grown by the region for the
        pasted classes; None when the full-hand prediction's are not known."""
        plan = plan or self.plan
        if out.boxes is None or out.probs is None or not plan.classes:
            return out.boxes
        pasted = np.zeros_like(out.boxes)
        pasted[list(plan.classes)] = out.region.box
        return union_boxes(out.boxes, pasted)


def path_list(spec) -> list:
    """One path or several -> a list."""
    return [spec] if isinstance(spec, (str, Path)) else list(spec)
