"""`cascade predict` at full size: images per second, peak memory and time per step, stage 1 alone vs cascade.

Generates N test images at --size, then runs the same loop `cascade predict` runs, timing each step:
decode, stage 1 (network + masks at native size), region, stage 2, paste, RLE encode. Each mode runs in its own
child process so that its peak memory (max RSS) is its own. Two earlier versions of stage 1 stay here for the
ratios: `stage1-all-instances` (ultralytics' path: every detection's mask upsampled to the whole image, then each
class's best kept) and `stage1-top-full-image` (only each class's best instance, but still upsampled to the whole
image); `stage1` builds each best instance's mask inside its box only.

    .venv/bin/python benchmarks/predict_bench.py --stage1 S1.pt --stage2 S2.pt --images 8 --size 2048
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


MODES = ("stage1-all-instances", "stage1-top-full-image", "stage1", "cascade")


def _top_instance_full_image_predictor(max_rounds: int = 3):
    """Stage 1 as it was before masks were built inside their boxes: ultralytics' own native masks, best
    instance per class (runner-up where the best comes out empty)."""
    import torch
    from ultralytics.engine.results import Results
    from ultralytics.models.yolo.segment import SegmentationPredictor

    from stage1_detect.predict import _isin, rank_in_class

    class Previous(SegmentationPredictor):
        def construct_result(self, pred, img, orig_img, img_path, proto):
            rank = rank_in_class(pred) if len(pred) else None
            boxes, masks, done = [], [], set()
            for r in range(max_rounds):
                rows = pred[(rank == r) & ~_isin(pred[:, 5], done)] if rank is not None else pred[:0]
                if r > 0 and len(rows) == 0:
                    break
                result = super().construct_result(rows.clone(), img, orig_img, img_path, proto)
                if result.masks is not None:
                    boxes.append(result.boxes.data)
                    masks.append(result.masks.data)
                    done |= set(result.boxes.cls.long().tolist())
            if not boxes:
                return result
            return Results(orig_img, path=img_path, names=self.model.names, boxes=torch.cat(boxes),
                           masks=torch.cat(masks))

    return Previous


def measure(args) -> dict:
    import torch

    from cascade.pipeline import Cascade, CascadeOutput
    from convert.images import read_image
    from convert.submission import encode_masks

    paths = sorted(Path(args.folder).rglob("*.png"))
    # the same kernels' choice in every mode (stage 2's model turns it on for itself on a GPU)
    torch.backends.cudnn.benchmark = torch.cuda.is_available()
    model = Cascade(args.stage1, None if args.mode.startswith("stage1") else args.stage2, device=args.device)
    if args.mode == "stage1-all-instances":
        model.stage1.predictor = None
    elif args.mode == "stage1-top-full-image":
        model.stage1.predictor = _top_instance_full_image_predictor()
    steps = dict.fromkeys(("decode", "stage1", "region", "stage2", "paste", "encode"), 0.0)

    import stage1_detect.predict as stage1_predict

    region_rule = stage1_predict.carpal_region

    def timed_region(*a, **k):  # the region rule runs inside Stage1Model.predict: time it there
        t = time.perf_counter()
        try:
            return region_rule(*a, **k)
        finally:
            steps["region"] += time.perf_counter() - t

    stage1_predict.carpal_region = timed_region
    sync = torch.cuda.synchronize if torch.cuda.is_available() and "cuda" in str(model.stage1.device) else (lambda: None)
    # warm-up on a full batch: first-call allocations, lazy initialisation and cuDNN's tuning for this batch
    model.run([read_image(p) for p in paths[:args.batch]])
    steps["region"] = 0.0
    start = time.perf_counter()
    for i in range(0, len(paths), args.batch):
        t = time.perf_counter()
        images = [read_image(p) for p in paths[i:i + args.batch]]
        steps["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        region_before = steps["region"]
        firsts = model.stage1.predict(images)
        sync()
        steps["stage1"] += time.perf_counter() - t - (steps["region"] - region_before)
        t = time.perf_counter()
        probs, kept = model.stage2_probs(images, [o.region for o in firsts])
        sync()
        steps["stage2"] += time.perf_counter() - t
        for o, p in zip(firsts, probs):
            t = time.perf_counter()
            out = CascadeOutput(o.masks, o.region, p, kept, o.boxes)
            boxes = model.final_boxes(out)
            masks = model.final_masks(out)
            steps["paste"] += time.perf_counter() - t
            t = time.perf_counter()
            encode_masks(masks, boxes)  # from the known boxes, as `cascade predict` does
            steps["encode"] += time.perf_counter() - t
    total = time.perf_counter() - start
    return {"images": len(paths), "seconds": total, "steps": steps,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage1", required=True)
    ap.add_argument("--stage2", required=True)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--device", default=None)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--folder", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:  # child process
        print(json.dumps(measure(args)))
        return

    from synthetic_hands import generate

    with tempfile.TemporaryDirectory() as tmp:
        generate(tmp, patients=0, test_patients=(args.images + 1) // 2, size=args.size, seed=5)
        print(f"{platform.machine()}, {args.images} images at {args.size} x {args.size}, batch {args.batch}, "
              f"device {args.device or 'auto'}")
        print("| mode | images/s | s/image | peak RSS (MB) | peak GPU (MB) | decode | stage 1 | region | stage 2 | "
              "paste | encode |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        rates = {}
        for mode in MODES:
            cmd = [sys.executable, __file__, "--stage1", args.stage1, "--stage2", args.stage2, "--batch",
                   str(args.batch), "--mode", mode, "--folder", tmp] + (["--device", args.device] if args.device else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:  # report and go on: one broken mode must not hide the others' figures
                print(f"| {mode} | failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode} |")
                print(proc.stderr[-3000:], file=sys.stderr)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            n = r["images"]
            rates[mode] = n / r["seconds"]
            per = {k: f"{1000 * v / n:.0f} ms" for k, v in r["steps"].items()}
            print(f"| {mode} | {n / r['seconds']:.2f} | {r['seconds'] / n:.2f} | {r['peak_rss_mb']:.0f} | "
                  f"{r['peak_gpu_mb']:.0f} | "
                  f"{per['decode']} | {per['stage1']} | {per['region']} | {per['stage2']} | {per['paste']} | {per['encode']} |")
        if "stage1" in rates and "stage1-all-instances" in rates:
            print(f"stage 1 with masks in their boxes over all instances' full masks: "
                  f"{rates['stage1'] / rates['stage1-all-instances']:.2f}x")


if __name__ == "__main__":
    main()
