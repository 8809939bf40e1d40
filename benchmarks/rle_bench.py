"""RLE encoding: the box and bounding-rows encoders against a plain vectorised numpy encoder, side by side.

Masks are generated hands at 2048 x 2048 (29 classes each). The encoders run on the same masks in the same
process; the submission time covers encoding all masks (from their boxes, as `cascade predict` does) and
writing the CSV. Each mask's box is its polygon's bounding box, one pixel wider each way, as stage 1's box,
the region or a decoded base's runs give it (found outside the timing: the pipeline knows it already).

    .venv/bin/python benchmarks/rle_bench.py --images 288 --size 2048
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from convert import rle
from convert.masks import class_masks
from convert.submission import write_submission
from synthetic_hands import load_synth_config, make_hand


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=288)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    cfg = load_synth_config()
    rng = np.random.default_rng(args.seed)
    t_box = t_fast = t_full = 0.0
    encoded = {}
    for i in range(args.images):
        polygons = make_hand(rng, args.size, bool(i % 2), cfg)
        masks = class_masks(polygons, (args.size, args.size))
        codes = []
        for m, (_, points) in zip(masks, polygons):
            box = (*(points.min(axis=0) - 1), *(points.max(axis=0) + 2))
            t0 = time.perf_counter()
            c = rle.encode(m, box)
            t1 = time.perf_counter()
            a = rle.encode(m)
            t2 = time.perf_counter()
            b = rle.encode_full(m)
            t3 = time.perf_counter()
            assert a == b == c, "encoders disagree"
            t_box += t1 - t0
            t_fast += t2 - t1
            t_full += t3 - t2
            codes.append(c)
        encoded[f"image{i:04d}.png"] = codes
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_submission(Path(tmp) / "submission.csv", encoded)
        t_write = time.perf_counter() - t0

    n = args.images * 29
    print(f"machine: {platform.processor() or platform.machine()}, {platform.python_version()}, numpy {np.__version__}")
    print(f"masks: {args.images} images x 29 classes at {args.size} x {args.size}")
    print("| encoder | ms per mask | total for all masks (s) |")
    print("|---|---|---|")
    print(f"| plain vectorised numpy (whole mask) | {1000 * t_full / n:.2f} | {t_full:.1f} |")
    print(f"| bounding rows (`convert.rle.encode(mask)`, no box known) | {1000 * t_fast / n:.2f} | {t_fast:.1f} |")
    print(f"| known box (`convert.rle.encode(mask, box)`) | {1000 * t_box / n:.3f} | {t_box:.2f} |")
    print(f"submission encode + write: {t_box + t_write:.1f} s (write {t_write:.2f} s); bounding rows "
          f"{t_full / t_fast:.1f}x over plain")
    print(f"known box speed-up over plain: {t_full / t_box:.1f}x")


if __name__ == "__main__":
    main()
