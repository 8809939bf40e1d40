"""Validation during stage 2's training: Dice per trained class over the held-out images, at native size,
straight and bent wrists apart (the best checkpoint is chosen on the test set's mix of the two)."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass

import numpy as np
import torch

from convert.classes import CARPAL_INDICES
from convert.wrist_pose import mix_poses
from plumbing.parallel import bounded_map

from . import distributed
from .config import Stage2Config
from .data import class_indices, preprocess_for, unpack_labels, val_crop
from .file_priors import FilePriors
from .precision import Precision
from .predict import predict_crops
from .prior import corrupt, gated


def score_classes(train_classes: list[int]) -> list[int]:
    """Channels the best checkpoint is chosen by: the carpals (what stage 2 is for), else every trained class."""
    carpal = [i for i, c in enumerate(train_classes) if c in CARPAL_INDICES]
    return carpal or list(range(len(train_classes)))


@dataclass
class ValDice:
    """Validation Dice per trained class, summed over the straight (row 0) and bent (row 1) wrists."""
    sums: np.ndarray     # (2, C)
    counts: np.ndarray   # (2,) images

    def mean(self, bent_share: float | None) -> np.ndarray:
        """Per class, the poses mixed at bent_share (None: every image alike)."""
        return mix_poses(self.sums, self.counts, bent_share)

    def pose(self, bent: bool) -> np.ndarray:
        """Per class over one pose's images; NaN without any."""
        row = int(bent)
        return self.sums[row] / self.counts[row] if self.counts[row] else np.full(self.sums.shape[1], np.nan)


def validate(net: torch.nn.Module, items, store, cfg: Stage2Config, device: torch.device,
             dist: distributed.Dist, file_priors: FilePriors | None = None) -> ValDice:
    """Dice per trained class over the validation images, each scored on its un-jittered ground-truth region
    at native size (predictions resized up to the crop, never labels shrunk), straight and bent wrists apart
    so the best checkpoint can be chosen on the test set's mix of the two. Ranks share the images."""
    classes = class_indices(cfg.train_classes)
    thresholds = torch.tensor(cfg.thresholds(), dtype=torch.float32, device=device)[:, None, None]
    preprocess = preprocess_for(cfg)
    precision = Precision.of(cfg.amp, cfg.amp_dtype, cfg.channels_last, device)
    # per pose: Dice sums, then the image count; on the device, so only these few numbers come back to the host
    totals = torch.zeros(2, len(classes) + 1, dtype=torch.float64, device=device)
    shard = items[dist.rank::dist.world]

    prior_classes = cfg.prior.indices

    def load(it):
        entry = store.get(it)
        image, truth = val_crop(entry, classes, packed=True)  # packed: 4 bytes a pixel to the device, not 29
        prior = None
        if file_priors is not None:  # the base's own predictions: what the cascade will be fed
            prior = file_priors.crop(it.name, entry.region)
        elif prior_classes:  # the training corruption, seeded per image: every epoch sees the same priors
            seed = int.from_bytes(hashlib.sha1(it.name.encode()).digest()[:8], "little")
            prior = corrupt(entry.crop_masks(prior_classes, entry.region), prior_classes, cfg.prior,
                            np.random.default_rng([cfg.seed, seed]))
        if prior is not None:
            prior = gated(prior, prior_classes, cfg.prior.gate)
        return image, truth, entry.bent, prior

    loaded = bounded_map(load, shard, max(1, cfg.workers))
    net.eval()
    chunk: list = []
    for one in itertools.chain(loaded, [None]):  # streamed: a few batches of crops in memory, never the fold
        if one is not None:
            chunk.append(one)
        if chunk and (one is None or len(chunk) == cfg.val_batch):
            probs = predict_crops(net, [c for c, *_ in chunk], cfg.input_size, preprocess, device, cfg.tta_hflip,
                                  cfg.val_batch, precision.dtype is not None, precision.channels_last,
                                  priors=[p for *_, p in chunk] if prior_classes else None,
                                  amp_dtype=precision.dtype or torch.float16, on_device=True)
            for p, (_, packed, bent, _) in zip(probs, chunk):
                truth = unpack_labels(torch.from_numpy(packed)[None].to(device), len(classes))[0].bool()
                totals[int(bent), :-1] += device_dice(p >= thresholds, truth)  # thresholded as the paste does
                totals[int(bent), -1] += 1
            chunk = []
    net.train()
    totals = distributed.all_sum(dist, totals.cpu()).numpy()
    return ValDice(totals[:, :-1], totals[:, -1])


def device_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """convert.dice.dice_per_class on the tensors' device: (C, h, w) bool -> (C,) float64 Dice, a class empty in
    both counting as 1."""
    inter = (pred & truth).sum((1, 2), dtype=torch.int64)
    total = pred.sum((1, 2), dtype=torch.int64) + truth.sum((1, 2), dtype=torch.int64)
    return torch.where(total > 0, 2 * inter.double() / total.clamp(min=1).double(), 1.0)
