"""Training and validation samples: the patient-grouped split, and crops of the carpal region with their labels.

Training crops come from the ground-truth region (THE region rule, convert.carpal_region.carpal_region, on
ground-truth masks) moved and resized at random, so the model is used to stage 1's imprecise regions; they
are sampled from the native-resolution image, zero outside it, in one warp to the input (resize, flip and turn
at once: resampling twice cost twice the time and blurred twice). Labels are every trained class inside the crop (the bones around the carpals included: a crop model that saw only carpal labels
confused them and lost on the test set), rasterised at native size and moved with exactly the image's geometry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from convert.classes import CLASS_INDEX
from convert.dataset import Item, Scan, scan
from convert.folds import FOLDS_FILE, load_folds, make_folds, save_folds
from plumbing.errors import DataError

from .cache import Entry, EntryStore
from .config import Stage2Config
from .file_priors import FilePriors
from .geometry import crop_matrix, footprint, jitter_box, reach, warp, warp_image
from .model import Preprocess
from .prior import corrupt, gated


@dataclass
class Split:
    train: list[Item]
    val: list[Item]
    folds: dict[str, int]
    k: int
    made: bool  # True when made here (no folds_file): the run folder keeps a copy


def scan_labelled(data: str | Path) -> Scan:
    """The labelled set; a pairing problem stops training with one line (`cascade check-data` lists them all)."""
    found = scan(data)
    if found.problems:
        first = found.problems[0]
        more = f" (+{len(found.problems) - 1} more; run `cascade check-data`)" if len(found.problems) > 1 else ""
        raise DataError(first.path, first.reason + more)
    return found


def split_items(found: Scan, cfg: Stage2Config) -> Split:
    """Patient-grouped train / val split: from folds_file when given (the file `cascade convert` wrote), else
    made here with the same rule."""
    if cfg.folds_file:
        folds, k = load_folds(cfg.folds_file)
        missing = sorted(set(found.patients) - set(folds))
        if missing:
            raise DataError(cfg.folds_file, f"no fold for patient(s) {', '.join(missing[:5])}"
                                            f"{' ...' if len(missing) > 5 else ''} of the data")
        made = False
    else:
        k = cfg.folds
        folds, made = make_folds(found.patients, k, cfg.seed), True
    if not 0 <= cfg.fold < k:
        raise DataError(cfg.folds_file or "fold", f"fold {cfg.fold} is not in 0..{k - 1}")
    train = [it for it in found.items if folds[it.patient] != cfg.fold]
    val = [it for it in found.items if folds[it.patient] == cfg.fold]
    if not train or not val:
        raise DataError(cfg.folds_file or "folds", f"fold {cfg.fold} leaves {len(train)} training and "
                                                   f"{len(val)} validation images")
    return Split(train, val, folds, k, made)


def write_folds(split: Split, run_dir: Path, seed: int) -> None:
    if split.made:
        save_folds(run_dir / FOLDS_FILE, split.folds, split.k, seed)


def class_indices(names: Sequence[str]) -> list[int]:
    return [CLASS_INDEX[n] for n in names]


def preprocess_for(cfg: Stage2Config) -> Preprocess:
    a, n = cfg.augment, cfg.normalize
    return Preprocess(n.mean, n.std, a.clahe, a.clahe_clip, a.clahe_tiles)


def crop_store_for(cfg: Stage2Config, cache_dir: Path | None) -> EntryStore:
    return EntryStore(cfg.region, reach(cfg.jitter.shift, cfg.jitter.scale[1], cfg.augment.rotate), cache_dir,
                      cfg.edge_tolerance)


class TrainCrops(torch.utils.data.Dataset):
    """(image (1, s, s) float32, labels (s, s, ceil(C / 8) [+ ceil(P / 8)]) uint8 bit-packed) for one jittered,
    augmented crop per item. The labels travel packed (29 classes: 4 bytes a pixel instead of 29, 4 MiB instead of
    29 per 1024 crop through the workers' shared memory) and are unpacked on the device by unpack_labels. With a
    prior (cfg.prior), its P channels (the ground truth corrupted, prior.corrupt, or for a share of the crops
    the prior file's masks as they are) follow the labels' bytes and move with exactly the same geometry;
    split_prior separates them."""

    def __init__(self, items: Sequence[Item], store: EntryStore, cfg: Stage2Config,
                 file_priors: FilePriors | None = None):
        import albumentations as A

        self.items, self.store = list(items), store
        self.classes = class_indices(cfg.train_classes)
        self.prior_cfg, self.prior_classes, self.file_priors = cfg.prior, cfg.prior.indices, file_priors
        self.size, self.jitter, self.augment = cfg.input_size, cfg.jitter, cfg.augment
        self.preprocess = preprocess_for(cfg)
        a = cfg.augment
        self.tone = A.RandomBrightnessContrast(a.brightness, a.contrast, p=a.brightness_contrast_prob)

    def __len__(self) -> int:
        return len(self.items)

    def _seed(self) -> np.random.SeedSequence:
        # drawn from torch's generator: seeded by cfg.seed in the main process and per worker by the DataLoader,
        # so runs repeat and workers never share a stream
        return np.random.SeedSequence(int(torch.randint(0, 2 ** 62, ())))

    def _matrix(self, entry: Entry, rng: np.random.Generator) -> np.ndarray:
        """The jittered box, flipped and turned at random, as one map from the input grid to image pixels."""
        a = self.augment
        box = jitter_box(entry.region, rng, self.jitter.shift, self.jitter.scale)
        flip = bool(rng.random() < a.hflip)
        angle = float(rng.uniform(-a.rotate, a.rotate)) if rng.random() < a.rotate_prob else 0.0
        return crop_matrix(box, self.size, angle, flip)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        entry = self.store.get(self.items[i])
        seeds = self._seed().generate_state(2)
        rng = np.random.default_rng(seeds[0])
        m = self._matrix(entry, rng)
        # one resampling from the native pixels straight to the input, for the image and its labels alike
        image = warp_image(entry.image, entry.origin, m, self.size)
        reads = footprint(m, self.size)
        packed = entry.crop_masks(self.classes, reads, packed=True)  # 8 classes a byte: nearest moves whole bytes
        if self.prior_classes:
            if self.file_priors is not None and rng.random() < self.prior_cfg.file_share:
                prior = self.file_priors.crop(self.items[i].name, reads)
            else:  # made wrong at native size, where the full-hand model's errors are
                prior = corrupt(entry.crop_masks(self.prior_classes, reads), self.prior_classes, self.prior_cfg, rng)
            prior = gated(prior, self.prior_classes, self.prior_cfg.gate)
            packed = np.concatenate([packed, np.packbits(prior.transpose(1, 2, 0), axis=-1)], axis=-1)
        masks = warp(packed, reads[:2], m, self.size, cv2.INTER_NEAREST)
        self.tone.set_random_seed(int(seeds[1]))  # its own stream: a shared one would tie tone to geometry
        image = self.tone(image=image)["image"]
        x = torch.from_numpy(self.preprocess(np.ascontiguousarray(image)))
        y = torch.from_numpy(np.ascontiguousarray(masks))
        return x, y


_BITS = (128, 64, 32, 16, 8, 4, 2, 1)  # np.packbits' order: the first class in the most significant bit


@functools.cache
def _bits(device: torch.device) -> torch.Tensor:
    # once per device: torch.tensor(..., device=cuda) is a blocking copy that would stall every step's stream
    return torch.tensor(_BITS, dtype=torch.uint8, device=device)


def unpack_labels(packed: torch.Tensor, classes: int) -> torch.Tensor:
    """(B, s, s, ceil(C / 8)) uint8 packed as np.packbits(axis=-1) does -> (B, C, s, s) float 0 / 1, on the
    tensor's own device."""
    flags = (packed.unsqueeze(-1) & _bits(packed.device)).ne(0).flatten(-2)[..., :classes]  # (B, s, s, C)
    return flags.permute(0, 3, 1, 2).float()


def split_prior(packed: torch.Tensor, classes: int, prior: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """TrainCrops' packed bytes -> (labels (B, C, s, s), prior (B, P, s, s) or None) as floats."""
    k = (classes + 7) // 8
    labels = unpack_labels(packed[..., :k], classes)
    return labels, (unpack_labels(packed[..., k:], prior) if prior else None)


def val_crop(entry: Entry, classes: Sequence[int], packed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The un-jittered region at native size: grey crop and (C, h, w) labels, for scoring at native size
    (packed: (h, w, ceil(C / 8)) as Entry.crop_masks packs them, for unpack_labels on the device)."""
    return entry.crop_image(entry.region), entry.crop_masks(classes, entry.region, packed)
