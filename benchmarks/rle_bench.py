"""RLE encoding: the bounding-rows encoder against a plain vectorised numpy encoder, side by side.

Masks are generated hands at 2048 x 2048 (29 classes each). Both encoders run on the same masks in the same
process; the submission time covers encoding all masks and writing the CSV.

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
    t_fast = t_full = 0.0
    encoded = {}
    for i in range(args.images):
        masks = class_masks(make_hand(rng, args.size, bool(i % 2), cfg), (args.size, args.size))
        codes = []
        for m in masks:
            t0 = time.perf_counter()
            a = rle.encode(m)
            t1 = time.perf_counter()
            b = rle.encode_full(m)
            t2 = time.perf_counter()
            assert a == b, "encoders disagree"
            t_fast += t1 - t0
            t_full += t2 - t1
            codes.append(a)
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
    print(f"| bounding rows (`convert.rle.encode`) | {1000 * t_fast / n:.2f} | {t_fast:.1f} |")
    print(f"speed-up: {t_full / t_fast:.1f}x; submission encode + write: {t_fast + t_write:.1f} s "
          f"(write {t_write:.2f} s)")


if __name__ == "__main__":
    main()
