"""Does stage 1 put its carpal region over the carpals of real radiographs? Against boxes drawn by eye
(benchmarks/fracatlas_carpal_boxes.json, which says how they were drawn), a film counts as found when the region
covers at least MIN_COVER of the drawn box while being at most MAX_AREA times its area (issue 23's rule: it must
hold the carpals, and not be most of the film).

    PYTHONPATH=. .venv/bin/python benchmarks/real_film_regions.py --stage1 runs/stage1/.../weights/best.pt \\
        --boxes benchmarks/fracatlas_carpal_boxes.json --images ../shared/realdata/fracatlas [--out table.md]

Prints (and with --out writes) a Markdown table: per film the drawn box, stage 1's region and its source, the
best region detection's confidence, the share of the drawn box covered, the area ratio, and the verdict; then
the total.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from convert.images import read_image  # noqa: E402
from plumbing.errors import CascadeError, DataError  # noqa: E402

MIN_COVER = 0.8  # the region must hold at least this share of the drawn carpal box
MAX_AREA = 8.0   # and be at most this many times its area: a region the size of the film finds nothing


def load_boxes(path: Path) -> dict[str, tuple[int, int, int, int]]:
    """{file name: (x0, y0, x1, y1)} from the JSON's `films`; a one-line DataError naming the file otherwise."""
    try:
        films = json.loads(path.read_text())["films"]
        boxes = {name: tuple(int(v) for v in film["box"]) for name, film in films.items()}
    except FileNotFoundError:
        raise DataError(path, "boxes file not found") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(path, f"expected {{\"films\": {{name: {{\"box\": [x0, y0, x1, y1]}}}}}} ({exc})") from None
    for name, box in boxes.items():
        if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
            raise DataError(path, f"{name}: box {list(box)} is not x0 < x1, y0 < y1")
    return boxes


def overlap(region, drawn) -> tuple[float, float]:
    """(share of the drawn box inside the region, region area / drawn area)."""
    ix = max(0, min(region[2], drawn[2]) - max(region[0], drawn[0]))
    iy = max(0, min(region[3], drawn[3]) - max(region[1], drawn[1]))
    drawn_area = (drawn[2] - drawn[0]) * (drawn[3] - drawn[1])
    return ix * iy / drawn_area, (region[2] - region[0]) * (region[3] - region[1]) / drawn_area


def found(cover: float, area: float) -> bool:
    return cover >= MIN_COVER and area <= MAX_AREA


def measure(weights, boxes: dict, images: Path, device: str | None = None) -> list[dict]:
    from stage1_detect.predict import Stage1Model

    model = Stage1Model(weights, device=device)
    rows = []
    for name, drawn in sorted(boxes.items()):
        path = images / name
        if not path.is_file():
            raise DataError(path, "film named in the boxes file not found")
        out = model.predict([read_image(path)])[0]
        cover, area = overlap(out.region.box, drawn)
        rows.append({"film": name, "drawn": drawn, "region": out.region.box, "source": out.region.source,
                     "conf": out.detection.conf if out.detection else 0.0, "cover": cover, "area": area,
                     "found": found(cover, area)})
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| film | drawn box | stage 1 region | source | region conf | covered | area ratio | found |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['film']} | {list(r['drawn'])} | {list(r['region'])} | {r['source']} | {r['conf']:.2f} | "
                     f"{r['cover']:.2f} | {r['area']:.1f} | {'yes' if r['found'] else 'no'} |")
    hits = sum(r["found"] for r in rows)
    lines += ["", f"Found on {hits} of {len(rows)} films (covers >= {MIN_COVER:.0%} of the drawn box, area <= "
                  f"{MAX_AREA:g}x); regions detected on {sum(r['source'] == 'detected' for r in rows)}."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", required=True, help="stage 1 weights (.pt)")
    ap.add_argument("--boxes", type=Path, default=Path(__file__).with_name("fracatlas_carpal_boxes.json"),
                    help="JSON of carpal boxes drawn by eye (default: %(default)s)")
    ap.add_argument("--images", type=Path, required=True, help="folder holding the films the JSON names")
    ap.add_argument("--device", default=None)
    ap.add_argument("--out", type=Path, help="Markdown table to write")
    args = ap.parse_args(argv)
    try:
        text = table(measure(args.stage1, load_boxes(args.boxes), args.images, args.device))
    except CascadeError as exc:
        sys.exit(f"error: {exc}")
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
