"""Several models of one stage used as one (e.g. the k models of a k-fold training): stage 1 by a pixel vote,
stage 2 by averaging probabilities. Each has the interface of the single model it stands for."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from convert.carpal_region import Region, carpal_region, region_from_box
from convert.rle import union_boxes
from plumbing.errors import CascadeError


class Stage1Vote:
    """Stage 1 models voting per pixel and class: a pixel is in a class's mask when at least half of the models
    put it there (a 5-fold vote beat every single YOLO model on this data: 0.944 vs 0.939-0.942). The carpal
    region is the mean of the members' detected regions when at least half of them detected it, else found on
    the voted masks, with the first model's rule."""

    def __init__(self, models: Sequence):
        self.models = list(models)
        self.region_cfg = self.models[0].region_cfg

    @property
    def region_cfg(self):
        return self._region_cfg

    @region_cfg.setter
    def region_cfg(self, cfg):  # the cascade sets stage 2's rule: the members finish their detections by it too
        self._region_cfg = cfg
        for model in self.models:
            model.region_cfg = cfg

    def predict(self, images: Sequence[np.ndarray]):
        from stage1_detect.predict import Stage1Output

        votes, scores, boxes, detected = None, None, None, None
        for model in self.models:  # one model's masks alive beside the counts
            outs = model.predict(images)
            if votes is None:
                votes = [np.zeros_like(o.masks) for o in outs]
                scores = [np.zeros_like(o.scores) for o in outs]
                boxes = [o.boxes for o in outs]
                detected = [[] for _ in outs]
            for i, (v, s, o) in enumerate(zip(votes, scores, outs)):
                v += o.masks
                s += o.scores / len(self.models)
                boxes[i] = union_boxes(boxes[i], o.boxes)  # a voted pixel is some model's pixel
                if o.region.source == "detected":
                    detected[i].append(o.region.box)
            del outs
        out = []
        for v, s, b, d in zip(votes, scores, boxes, detected):
            masks = (2 * v.astype(np.uint16) >= len(self.models)).astype(np.uint8)  # ties count as foreground
            if 2 * len(d) >= len(self.models):  # the members' boxes are finished by the same rule already
                region = region_from_box(np.mean(d, axis=0), masks.shape[1:], self.region_cfg, self.region_cfg.margin)
            else:
                region = carpal_region(masks, self.region_cfg)
            out.append(Stage1Output(masks, s, region, b))
        return out


class Stage2Mean:
    """Stage 2 checkpoints averaged: the mean of their probabilities on each region's native pixels. They must
    predict the same classes from the same crops (same class list and region rule); the paste classes,
    thresholds and largest-blob setting are the first checkpoint's."""

    def __init__(self, models: Sequence):
        self.models = list(models)
        first = self.models[0]
        for m in self.models[1:]:
            if m.train_classes != first.train_classes or m.region_cfg != first.region_cfg:
                raise CascadeError(f"{m.path}: other classes or another region rule than {first.path}; "
                                   "only checkpoints trained alike can be averaged")
        self.path = first.path
        self.train_classes, self.paste_classes = first.train_classes, first.paste_classes
        self.thresholds, self.region_cfg = first.thresholds, first.region_cfg
        self.largest_component = first.largest_component
        self.needs_prior = any(m.needs_prior for m in self.models)  # members with and without a prior may mix

    def predict(self, images: Sequence[np.ndarray], regions: Sequence[Region], tta_hflip: bool = False,
                batch: int = 8, channels: Sequence[int] | None = None,
                full: Sequence[np.ndarray] | None = None) -> list[np.ndarray]:
        total = None
        for model in self.models:
            probs = model.predict(images, regions, tta_hflip=tta_hflip, batch=batch, channels=channels, full=full)
            total = probs if total is None else [t + p for t, p in zip(total, probs)]
        return [t / len(self.models) for t in total]
