"""Training crops per second on one core: one warp from the native pixels against the old two resamplings.

The old path (kept here as the reference) resized the jittered box to input x rotation margin (~1313 px at
1024), then rotated that at its size and centre-cropped the input; `stage2_segment.data.TrainCrops` samples
the native crop straight onto the input grid in one cv2.warpAffine. Both run side by side in one process, on
the same cached entries, in the main process (workers=0) with one OpenCV and one torch thread.

    .venv/bin/python benchmarks/crop_bench.py --patients 8 --size 2048 input_size=1024
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

import plumbing  # noqa: F401  (the offline environment first)
from stage2_segment.config import load_stage2_config
from stage2_segment.data import TrainCrops, crop_store_for, scan_labelled, split_items
from stage2_segment.geometry import jitter_box, resize_image, resize_masks, rotation_margin, scale_box
from synthetic_hands import generate

ROOT = Path(__file__).resolve().parent.parent


class TwoResampleCrops(TrainCrops):
    """The crop as it was before the single warp: resize to a margin-enlarged square, rotate it, centre-crop."""

    def __init__(self, items, store, cfg):
        import albumentations as A

        super().__init__(items, store, cfg)
        a = cfg.augment
        self.margin = rotation_margin(a.rotate) if a.rotate > 0 else 1.0
        self.big = int(np.ceil(self.size * self.margin))
        self.aug = A.Compose([
            A.HorizontalFlip(p=a.hflip),
            A.Affine(rotate=(-a.rotate, a.rotate), border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0,
                     interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST, p=a.rotate_prob),
            A.CenterCrop(self.size, self.size),
            A.RandomBrightnessContrast(a.brightness, a.contrast, p=a.brightness_contrast_prob),
        ])

    def __getitem__(self, i):
        entry = self.store.get(self.items[i])
        seeds = self._seed().generate_state(len(self.aug.transforms) + 1)
        rng = np.random.default_rng(seeds[0])
        for t, s in zip(self.aug.transforms, seeds[1:]):
            t.set_random_seed(int(s))
        big = scale_box(jitter_box(entry.region, rng, self.jitter.shift, self.jitter.scale), self.margin)
        image = resize_image(entry.crop_image(big), self.big)
        masks = resize_masks(entry.crop_masks(self.classes, big, packed=True), self.big)
        out = self.aug(image=image, mask=masks)
        x = torch.from_numpy(self.preprocess(np.ascontiguousarray(out["image"])))
        y = torch.from_numpy(np.ascontiguousarray(out["mask"].reshape(self.size, self.size, -1)))
        return x, y


def rate(data: TrainCrops, passes: int) -> float:
    torch.manual_seed(0)
    data[0]  # the first read loads the entry's file into the page cache
    n, t0 = 0, time.perf_counter()
    for _ in range(passes):
        for i in range(len(data)):
            data[i]
            n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "stage2.yaml")
    ap.add_argument("--passes", type=int, default=2, help="passes over the training images per mode")
    ap.add_argument("overrides", nargs="*", help="key=value over the config, e.g. input_size=512")
    args = ap.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate(tmp / "data", args.patients, size=args.size, seed=args.seed)
        cfg = load_stage2_config(args.config, [f"cache_dir={tmp / 'cache'}", *args.overrides])
        split = split_items(scan_labelled(tmp / "data" / "train"), cfg)
        store = crop_store_for(cfg, tmp / "cache")
        store.build(split.train, 1)
        sides = [e.region[2] - e.region[0] for e in map(store.get, split.train)]
        rows = {name: rate(kind(split.train, store, cfg), args.passes)
                for name, kind in (("two resamplings (before)", TwoResampleCrops), ("one warp", TrainCrops))}

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}, OpenCV {cv2.__version__}; 1 thread each")
    print(f"{len(split.train)} training images at {args.size} px, regions {min(sides)}-{max(sides)} px, "
          f"input {cfg.input_size}, {args.passes} passes")
    print("| training crop | crops/s per core | ms per crop |")
    print("|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r:.1f} | {1000 / r:.1f} |")
    print(f"one warp speed-up {rows['one warp'] / rows['two resamplings (before)']:.2f}x")


if __name__ == "__main__":
    main()
