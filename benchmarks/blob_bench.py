"""Carpal Dice of the cascade with every blob of stage 2's pasted masks against only the largest blob of each.

Each `--pair STAGE1 STAGE2` is scored on the held-out fold at native resolution, at the checkpoint's thresholds,
both ways in one pass (the networks run once per image).

  .venv/bin/python benchmarks/blob_bench.py --data demo_out/data/train --folds demo_out/yolo/folds.json \
      --pair demo_out/runs/stage1/demo/weights/best.pt demo_out/runs/stage2/demo/best.pt
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cascade.evaluate import held_out  # noqa: E402
from cascade.pipeline import Cascade  # noqa: E402
from convert.classes import CARPAL_INDICES, CLASSES  # noqa: E402
from convert.dataset import iter_samples  # noqa: E402
from convert.dice import dice_per_class  # noqa: E402
from convert.masks import class_masks  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--folds", required=True, type=Path)
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--pair", nargs=2, action="append", required=True, type=Path, metavar=("STAGE1", "STAGE2"))
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    carpals = list(CARPAL_INDICES)
    print("| stage 1 weights, stage 2 checkpoint | carpal, every blob | carpal, largest blob | gain | "
          + " | ".join(CLASSES[c] for c in carpals) + " |")
    print("|---" * (4 + len(carpals)) + "|")
    for stage1, stage2 in args.pair:
        model = Cascade(stage1, stage2, device=args.device)
        plans = [dataclasses.replace(model.plan, largest=blobs) for blobs in ((), model.plan.classes)]
        dice = [[], []]
        for sample in iter_samples(held_out(args.data, args.folds, args.fold)):
            out = model.run([sample.image])[0]
            truth = class_masks(sample.polygons, sample.hw)
            for k, plan in enumerate(plans):
                dice[k].append(dice_per_class(model.final_masks(out, plan, copy=True), truth)[carpals])
        every, largest = (np.mean(d, axis=0) for d in dice)
        gain = largest - every
        print(f"| {stage1}, {stage2} | {every.mean():.4f} | {largest.mean():.4f} | {gain.mean():+.4f} | "
              + " | ".join(f"{g:+.3f}" for g in gain) + " |", flush=True)


if __name__ == "__main__":
    main()
