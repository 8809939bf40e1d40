"""`cascade convert` throughput on 2048 x 2048 inputs: images per second, native copy vs resized, 1 vs all threads.

    .venv/bin/python benchmarks/convert_bench.py --patients 10 --size 2048
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from convert.check import check_dataset
from convert.yolo import convert_to_yolo
from synthetic_hands import generate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=10)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--imgsz", type=int, default=1024)
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        generate(root / "data", args.patients, size=args.size, seed=0)
        n = 2 * args.patients
        print(f"{n} images at {args.size} x {args.size}, {cores} cores")
        print("| step | threads | images/s |")
        print("|---|---|---|")
        for workers in sorted({1, cores}):
            t0 = time.perf_counter()
            check_dataset(root / "data" / "train", workers=workers)
            print(f"| check-data (decode + validate) | {workers} | {n / (time.perf_counter() - t0):.1f} |")
            for imgsz in (None, args.imgsz):
                out = root / "yolo"
                t0 = time.perf_counter()
                convert_to_yolo(root / "data" / "train", out, folds=2, imgsz=imgsz, workers=workers, overwrite=True)
                label = "convert, native size (copy)" if imgsz is None else f"convert, --imgsz {imgsz}"
                print(f"| {label} | {workers} | {n / (time.perf_counter() - t0):.1f} |")
                shutil.rmtree(out)


if __name__ == "__main__":
    main()
