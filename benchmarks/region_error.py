"""How far stage 1's carpal region is from the label region (THE rule on the labels) on held-out patients: the
error stage 2's training jitter (configs/stage2*.yaml `jitter:`) should cover.

    PYTHONPATH=. .venv/bin/python benchmarks/region_error.py --data DATA/train --folds YOLO/folds.json --fold 0 \\
        --stage1 runs/stage1/.../weights/best.pt [--out region_error.csv]

Per image: the source of stage 1's region, the confidence of its best region detection (0: none), the centre
offset along x and y and the side ratio, offsets as fractions of the label region's side (as stage 2's
`jitter.shift`, drawn per axis), whether all 8 carpals lie inside (a hit), and whether the best detection would
have been a hit whatever its confidence (det_hit: to choose `region_conf`). The summary gives the median and
90th percentile of |offset| and of the side ratio, for the detected regions and for all.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from cascade.evaluate import held_out  # noqa: E402
from convert.carpal_region import carpal_region, describe_sources  # noqa: E402
from convert.classes import CARPAL_INDICES  # noqa: E402
from convert.dataset import load_sample  # noqa: E402
from convert.dice import region_contains  # noqa: E402
from convert.masks import class_masks  # noqa: E402
from stage1_detect.region import pick_region  # noqa: E402

FIELDS = ("image", "source", "conf", "dx", "dy", "side_ratio", "hit", "det_hit")


def region_error(region_box, label_box) -> tuple[float, float, float]:
    """(dx, dy, side ratio): the region's centre minus the label region's, over the label region's side (its
    longer one), and the region's side over the label region's (longer sides: the rule's boxes are square)."""
    rx0, ry0, rx1, ry1 = region_box
    lx0, ly0, lx1, ly1 = label_box
    side = max(lx1 - lx0, ly1 - ly0)
    dx = ((rx0 + rx1) - (lx0 + lx1)) / 2 / side
    dy = ((ry0 + ry1) - (ly0 + ly1)) / 2 / side
    return dx, dy, max(rx1 - rx0, ry1 - ry0) / side


def measure(data, folds, fold: int, weights, device: str | None = None) -> list[dict]:
    from stage1_detect.predict import Stage1Model

    model = Stage1Model(weights, device=device)
    rows = []
    for item in held_out(data, folds, fold):
        sample = load_sample(item)
        truth = class_masks(sample.polygons, sample.hw)
        label = carpal_region(truth, model.region_cfg)  # what stage 2 trains on
        out = model.predict([sample.image])[0]
        dx, dy, ratio = region_error(out.region.box, label.box)
        raw = pick_region(out.masks, out.detection, model.region_cfg, 0.0, model.region_box_margin,
                          model.region_grow)
        rows.append({"image": item.name, "source": out.region.source,
                     "conf": out.detection.conf if out.detection else 0.0, "dx": dx, "dy": dy, "side_ratio": ratio,
                     "hit": region_contains(out.region, truth, CARPAL_INDICES),
                     "det_hit": region_contains(raw, truth, CARPAL_INDICES) if out.detection else ""})
    return rows


def summary(rows: list[dict]) -> str:
    if not rows:
        return "no images"
    offset = np.abs([[r["dx"], r["dy"]] for r in rows]).ravel()  # both axes: stage 2 draws each axis apart
    ratio = np.array([r["side_ratio"] for r in rows])
    q = lambda v, p: float(np.quantile(v, p))  # noqa: E731
    return (f"{len(rows)} images: |centre offset| / side median {q(offset, 0.5):.3f}, p90 {q(offset, 0.9):.3f} "
            f"(max {offset.max():.3f}); side ratio median {q(ratio, 0.5):.3f}, p10 {q(ratio, 0.1):.3f}, "
            f"p90 {q(ratio, 0.9):.3f}; hit rate {np.mean([r['hit'] for r in rows]):.3f}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="labelled folder (DCM/, outputs_json/)")
    ap.add_argument("--folds", required=True, help="folds.json written by `cascade convert`")
    ap.add_argument("--fold", type=int, default=0, help="the held-out fold")
    ap.add_argument("--stage1", required=True, help="stage 1 weights (.pt)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, help="per-image CSV to write")
    args = ap.parse_args(argv)
    from collections import Counter

    from plumbing.errors import CascadeError

    try:
        rows = measure(args.data, args.folds, args.fold, args.stage1, args.device)
    except CascadeError as exc:
        sys.exit(f"error: {exc}")
    if args.out:
        with open(args.out, "w", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    confs = sorted(round(r["conf"], 2) for r in rows)
    print(f"region sources: {describe_sources(Counter(r['source'] for r in rows))}; best region-detection "
          f"confidences: {confs}")
    print("detected: " + summary([r for r in rows if r["source"] == "detected"]))
    print("all:      " + summary(rows))


if __name__ == "__main__":
    main()
