"""Dice of 29 classes at 2048: counted over the whole image against counted in each class's box (what
`convert.dice.dice_per_class` does), on generated hands, side by side; both must agree exactly.

  .venv/bin/python benchmarks/dice_bench.py --images 8 --size 2048
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from convert.dice import dice_per_class  # noqa: E402
from convert.masks import class_masks  # noqa: E402
from synthetic_hands import load_synth_config, make_hand  # noqa: E402


def whole_image_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    p = pred.reshape(len(pred), -1).astype(bool, copy=False)
    t = truth.reshape(len(truth), -1).astype(bool, copy=False)
    inter = np.array([np.count_nonzero(a & b) for a, b in zip(p, t)], np.float64)
    total = np.count_nonzero(p, axis=1) + np.count_nonzero(t, axis=1)
    return np.where(total > 0, 2 * inter / np.maximum(total, 1), 1.0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    args = ap.parse_args(argv)

    cfg, times = load_synth_config(), {"whole image": 0.0, "boxes": 0.0}
    for i in range(args.images):
        truth = class_masks(make_hand(np.random.default_rng([1, i]), args.size, bool(i % 2), cfg),
                            (args.size, args.size))
        pred = np.roll(truth, (3, -2), axis=(1, 2))  # a prediction a few pixels off
        start = time.perf_counter()
        expected = whole_image_dice(pred, truth)
        times["whole image"] += time.perf_counter() - start
        start = time.perf_counter()
        got = dice_per_class(pred, truth)
        times["boxes"] += time.perf_counter() - start
        assert np.array_equal(got, expected), i
    print(f"{args.images} images of {args.size} x {args.size}, 29 classes, identical Dice")
    print("| counted over | ms per image |\n|---|---|")
    for name, seconds in times.items():
        print(f"| {name} | {1000 * seconds / args.images:.0f} |")
    print(f"speed-up {times['whole image'] / times['boxes']:.1f}x")


if __name__ == "__main__":
    main()
