"""The cascade on decoded images: stage 1 on the whole hand, stage 2 on its carpal region, pasted back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from convert.region import Region

from .paste import PastePlan, paste


@dataclass
class CascadeOutput:
    stage1_masks: np.ndarray      # (29, H, W) uint8 from stage 1
    region: Region
    probs: np.ndarray | None      # (len(train_classes), h, w) stage 2 probabilities in the region, or None


class Cascade:
    """Both stages loaded once. `stage2_checkpoint=None` runs stage 1 alone. A list of several weights (or
    checkpoints) makes that stage an ensemble (cascade.ensemble): stage 1 votes, stage 2 averages."""

    def __init__(self, stage1_weights: str | Path | Sequence[str | Path],
                 stage2_checkpoint: str | Path | Sequence[str | Path] | None = None,
                 device: str | None = None, plan: PastePlan | None = None, tta_hflip: bool = False,
                 conf: float | None = None):
        from stage1_detect.predict import Stage1Model

        from .ensemble import Stage1Vote, Stage2Mean

        firsts = [Stage1Model(w, device=device, conf=conf) for w in paths_of(stage1_weights)]
        self.stage1 = firsts[0] if len(firsts) == 1 else Stage1Vote(firsts)
        self.stage2 = None
        self.tta_hflip = tta_hflip
        if stage2_checkpoint is not None and paths_of(stage2_checkpoint):
            from stage2_segment.predict import Stage2Model

            seconds = [Stage2Model(c, device=device) for c in paths_of(stage2_checkpoint)]
            self.stage2 = seconds[0] if len(seconds) == 1 else Stage2Mean(seconds)
            # crop exactly as stage 2 was trained to see crops; the fallback prior stays stage 1's own
            self.stage1.region_cfg = replace(self.stage2.region_cfg, prior=self.stage1.region_cfg.prior)
            checkpoint_plan = PastePlan(tuple(self.stage2.paste_classes),
                                        {c: float(t) for c, t in zip(self.stage2.train_classes, self.stage2.thresholds)},
                                        tuple(self.stage2.paste_classes) if self.stage2.largest_component else ())
            # a plan from `cascade evaluate` picks classes; what it does not say comes from the checkpoint
            if plan is not None:
                plan.check(self.stage2.train_classes, paths_of(stage2_checkpoint)[0])
            self.plan = checkpoint_plan if plan is None else PastePlan(
                plan.classes, {**checkpoint_plan.thresholds, **plan.thresholds},
                checkpoint_plan.largest if plan.largest is None else plan.largest, plan.source)
        else:
            self.plan = PastePlan((), {})

    def run(self, images: Sequence[np.ndarray]) -> list[CascadeOutput]:
        firsts = self.stage1.predict(images)
        regions = [o.region for o in firsts]
        probs = (self.stage2.predict(images, regions, tta_hflip=self.tta_hflip)
                 if self.stage2 is not None and self.plan.classes else [None] * len(images))
        return [CascadeOutput(o.masks, o.region, p) for o, p in zip(firsts, probs)]

    def final_masks(self, out: CascadeOutput, plan: PastePlan | None = None, copy: bool = False) -> np.ndarray:
        """The submission's masks: stage 1 with stage 2 pasted for the plan's classes (in place unless copy)."""
        masks = out.stage1_masks.copy() if copy else out.stage1_masks
        plan = plan or self.plan
        if out.probs is not None and plan.classes:
            paste(masks, out.probs, out.region, self.stage2.train_classes, plan)
        return masks


def paths_of(spec) -> list:
    """One path or several -> a list."""
    return [spec] if isinstance(spec, (str, Path)) else list(spec)
