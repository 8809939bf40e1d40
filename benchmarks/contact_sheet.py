"""Contact sheet of synthetic radiographs with their polygon outlines, for a look at what the generator makes.

    .venv/bin/python benchmarks/contact_sheet.py            # -> docs/img/synth_contact_sheet.png

Each tile is one generated image (alternating right and left hands, so bent wrists, both sides and the pose
range show up), shrunk to --tile pixels, with every class outlined in its own colour. The first --rows rows
use configs/synth.yaml as it is (the competition's look-alikes); the next --film-rows rows add the film mix
`cascade demo` uses (configs/demo.yaml, synth_overrides): fingers down, turned and far hands, collimation,
side letters, logos, a second hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from convert.classes import NUM_CLASSES  # noqa: E402
from convert.masks import class_masks  # noqa: E402
from convert.wrist_pose import is_bent  # noqa: E402
from plumbing.atomic import atomic_path  # noqa: E402
from synthetic_hands import load_synth_config, place_hand, render  # noqa: E402


def class_colours(n: int = NUM_CLASSES) -> list[tuple[int, int, int]]:
    """n well-separated saturated BGR colours (evenly spaced hues)."""
    hsv = np.stack([np.arange(n) * 180 // n, np.full(n, 220), np.full(n, 255)], 1).astype(np.uint8)
    return [tuple(int(v) for v in c) for c in cv2.cvtColor(hsv[None], cv2.COLOR_HSV2BGR)[0]]


def tile(seed: int, index: int, size: int, out_px: int, cfg) -> np.ndarray:
    rng = np.random.default_rng([seed, index])
    left = bool(index % 2)
    polygons, film = place_hand(rng, size, left, cfg)
    image = render(polygons, size, rng, cfg, film)
    small = cv2.resize(image, (out_px, out_px), interpolation=cv2.INTER_AREA)
    canvas = cv2.cvtColor(small, cv2.COLOR_GRAY2BGR)
    k = out_px / size
    colours = class_colours()
    for cls, pts in polygons:
        scaled = np.round((pts + 0.5) * k - 0.5).astype(np.int32)
        cv2.polylines(canvas, [scaled], True, colours[cls], 1, lineType=cv2.LINE_AA)
    tag = ("L" if left else "R") + (" bent" if is_bent(class_masks(polygons, (size, size))) else "")
    # Yellow, so that the tag is not taken for a letter burnt into the film.
    cv2.putText(canvas, tag, (8, out_px - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
    return canvas


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "img" / "synth_contact_sheet.png")
    ap.add_argument("--rows", type=int, default=2)
    ap.add_argument("--cols", type=int, default=3)
    ap.add_argument("--size", type=int, default=1024, help="generated image size")
    ap.add_argument("--tile", type=int, default=256, help="tile size (12 x 256 px keeps the PNG near 600 KB)")
    ap.add_argument("--film-rows", type=int, default=2, help="rows with the demo's film mix")
    ap.add_argument("--seed", type=int, default=4, help="4: two of the six wrists are bent, one per side")
    ap.add_argument("--film-seed", type=int, default=2, help="2: each film effect shows at least once")
    ap.add_argument("overrides", nargs="*", help="synth config overrides, e.g. pose.bent_wrist_prob=0.5")
    args = ap.parse_args(argv)
    cfg = load_synth_config(overrides=args.overrides)
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    film_cfg = load_synth_config(overrides=[*demo.get("synth_overrides", []), *args.overrides])
    tiles = [tile(args.seed, i, args.size, args.tile, cfg) for i in range(args.rows * args.cols)]
    tiles += [tile(args.film_seed, i, args.size, args.tile, film_cfg) for i in range(args.film_rows * args.cols)]
    rows = [np.hstack(tiles[r * args.cols:(r + 1) * args.cols]) for r in range(args.rows + args.film_rows)]
    ok, buf = cv2.imencode(".png", np.vstack(rows), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise SystemExit("PNG encoding failed")
    with atomic_path(args.out) as tmp:
        tmp.write_bytes(buf.tobytes())
    print(f"{args.out} ({len(buf) / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
