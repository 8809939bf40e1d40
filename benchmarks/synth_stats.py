"""Measure a generated synthetic set the way the real one was described, and print a Markdown table.

    .venv/bin/python benchmarks/synth_stats.py --patients 20 --size 1024 --seed 0

The set is written to a temporary folder (or --out) and read back through convert.dataset, so what is
measured is what a user would load. Areas and coordinates are scaled to a 2048 x 2048 image, the size of the
real data, so the figures compare directly with the data description's (docs/earlier-work.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convert.classes import CARPAL_INDICES, CLASS_INDEX, CLASSES  # noqa: E402
from convert.dataset import load_sample, scan  # noqa: E402
from convert.masks import class_masks  # noqa: E402
from convert.wrist_pose import is_bent  # noqa: E402
from synthetic_hands import REF_SIZE, generate, load_synth_config  # noqa: E402

# Figures of the real training set, from the dataset's data description (docs/earlier-work.md).
REAL = {
    "finger-16 area": "~3,900", "Pisiform area": "~4,300", "Radius area": "~75,000",
    "Triquetrum/Pisiform IoU": "0.45 (overlap in 799/800)", "Trapezium/Trapezoid IoU": "0.19 (overlap in 800/800)",
    "two-label pixels / image pixels": "~0.4%", "carpal box x": "590-1310", "carpal box y": "870-1700",
    "bent wrists": "11% train, 58% test",
}
PAIRS = (("Triquetrum", "Pisiform"), ("Trapezium", "Trapezoid"))


def measure(root: Path) -> dict:
    found = scan(root / "train")
    if found.problems:
        raise SystemExit("\n".join(str(p) for p in found.problems))
    areas, ious, two_image, two_labelled, boxes, bent, points = [], {p: [] for p in PAIRS}, [], [], [], [], []
    for item in found.items:
        sample = load_sample(item)
        h, w = sample.hw
        k = REF_SIZE / w
        masks = class_masks(sample.polygons, (h, w)).astype(bool)
        flat = masks.reshape(len(CLASSES), -1)
        area = flat.sum(1)
        areas.append(area * k * k)
        for a, b in PAIRS:
            i, j = CLASS_INDEX[a], CLASS_INDEX[b]
            inter = np.count_nonzero(flat[i] & flat[j])
            ious[(a, b)].append(inter / max(area[i] + area[j] - inter, 1))
        count = flat.sum(0)
        two_image.append(np.count_nonzero(count >= 2) / count.size)
        two_labelled.append(np.count_nonzero(count >= 2) / max(np.count_nonzero(count), 1))
        ys, xs = np.nonzero(masks[list(CARPAL_INDICES)].any(0))
        boxes.append(np.array([xs.min(), xs.max() + 1, ys.min(), ys.max() + 1]) * k)
        bent.append(is_bent(masks))
        points.append([len(p) for _, p in sample.polygons])
    return {"images": len(found.items), "areas": np.array(areas), "ious": {p: np.array(v) for p, v in ious.items()},
            "two_image": np.array(two_image), "two_labelled": np.array(two_labelled), "boxes": np.array(boxes),
            "bent": np.array(bent), "points": np.array(points)}


def table(m: dict) -> str:
    a = m["areas"].mean(0)
    order = np.argsort(a)
    rows = [("finger-16 area", f"{a[CLASS_INDEX['finger-16']]:,.0f}"),
            ("Pisiform area", f"{a[CLASS_INDEX['Pisiform']]:,.0f}"),
            ("Radius area", f"{a[CLASS_INDEX['Radius']]:,.0f}")]
    for pair, v in m["ious"].items():
        rows.append((f"{pair[0]}/{pair[1]} IoU",
                     f"{v.mean():.2f} (range {v.min():.2f}-{v.max():.2f}, overlap in {np.count_nonzero(v)}/{len(v)})"))
    rows.append(("two-label pixels / image pixels", f"{100 * m['two_image'].mean():.2f}%"))
    rows.append(("two-label pixels / labelled pixels", f"{100 * m['two_labelled'].mean():.2f}%"))
    b = m["boxes"]
    for axis, lo, hi in (("x", 0, 1), ("y", 2, 3)):
        rows.append((f"carpal box {axis}", f"mean {b[:, lo].mean():.0f}-{b[:, hi].mean():.0f}, "
                                           f"envelope {b[:, lo].min():.0f}-{b[:, hi].max():.0f}"))
    rows.append(("carpal box size", f"{(b[:, 1] - b[:, 0]).mean():.0f} x {(b[:, 3] - b[:, 2]).mean():.0f} (mean w x h)"))
    rows.append(("bent wrists", f"{100 * m['bent'].mean():.0f}% ({np.count_nonzero(m['bent'])}/{len(m['bent'])})"))
    lines = ["| measure | synthetic | real |", "|---|---|---|"]
    lines += [f"| {name} | {value} | {REAL.get(name, '')} |" for name, value in rows]
    smallest = ", ".join(f"{CLASSES[i]} {a[i]:,.0f}" for i in order[:4])
    largest = ", ".join(f"{CLASSES[i]} {a[i]:,.0f}" for i in order[::-1][:2])
    pts = m["points"]
    lines += ["", f"Smallest classes (mean px at 2048): {smallest}. Largest: {largest}.",
              f"Points per polygon: median {np.median(pts):.0f}, range {pts.min()}-{pts.max()}; "
              f"Pisiform median {np.median(pts[:, CLASS_INDEX['Pisiform']]):.0f}."]
    lines += ["", "| class | mean area (px at 2048) |", "|---|---|"]
    lines += [f"| {c} | {a[i]:,.0f} |" for i, c in enumerate(CLASSES)]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=20)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="keep the generated set here (default: a temporary folder)")
    ap.add_argument("overrides", nargs="*", help="synth config overrides, e.g. pose.bent_wrist_prob=0.6")
    args = ap.parse_args(argv)
    cfg = load_synth_config(overrides=args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or Path(tmp)
        t = time.perf_counter()
        generate(root, args.patients, size=args.size, seed=args.seed, cfg=cfg)
        seconds = time.perf_counter() - t
        m = measure(root)
    print(f"{m['images']} images of {args.size} px (seed {args.seed}), generated in {seconds:.1f} s "
          f"({1000 * seconds / m['images']:.0f} ms per image, written as PNG + JSON)\n")
    print(table(m))


if __name__ == "__main__":
    main()
