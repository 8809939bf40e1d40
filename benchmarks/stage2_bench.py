"""Stage 2 data pipeline: training crops read through the crop cache against decoding PNG + JSON every time.

Side by side in one process on the same generated images: (1) the data pipeline alone (DataLoader over the
training crops, no network), (2) a whole training epoch plus validation with the CPU config's network. The
cache is built once before the cached runs; its build time and size are reported too.

    .venv/bin/python benchmarks/stage2_bench.py --patients 8 --size 2048
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

import plumbing  # noqa: F401  (the offline environment first)
from stage2_segment.config import load_stage2_config
from stage2_segment.distributed import default_workers
from stage2_segment.data import TrainCrops, scan_labelled, split_items, crop_store_for
from stage2_segment.train import train_stage2
from synthetic_hands import generate

ROOT = Path(__file__).resolve().parent.parent


def pipeline_rate(items, store, cfg, passes: int) -> float:
    """Training crops per second through a DataLoader, no network."""
    torch.manual_seed(cfg.seed)
    loader = torch.utils.data.DataLoader(TrainCrops(items, store, cfg), batch_size=cfg.batch, shuffle=True,
                                         num_workers=cfg.workers, persistent_workers=cfg.workers > 0)
    seen, t0 = 0, time.perf_counter()
    for _ in range(passes):
        for x, _ in loader:
            seen += len(x)
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="a labelled set (DCM/ + outputs_json/); default: generate one")
    ap.add_argument("--patients", type=int, default=8)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "stage2_cpu.yaml")
    ap.add_argument("--passes", type=int, default=2, help="pipeline passes over the training images per mode")
    ap.add_argument("--pipeline-only", action="store_true", help="skip the training epochs (e.g. at input 1024)")
    ap.add_argument("overrides", nargs="*", help="key=value over the config, e.g. input_size=256 workers=2")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            t0 = time.perf_counter()
            generate(tmp / "data", args.patients, size=args.size, seed=args.seed)
            data = tmp / "data" / "train"
            print(f"generated {args.patients} patients at {args.size} px in {time.perf_counter() - t0:.0f} s")
        cfg = load_stage2_config(args.config, ["epochs=1", "resume=false", f"out={tmp / 'runs'}",
                                               f"cache_dir={tmp / 'cache'}", *args.overrides])
        if cfg.workers is None:  # as training resolves it
            cfg = replace(cfg, workers=default_workers())
        split = split_items(scan_labelled(data), cfg)
        print(f"{len(split.train)} train / {len(split.val)} val images; input {cfg.input_size}, {cfg.encoder}, "
              f"batch {cfg.batch}, workers {cfg.workers}, torch threads {torch.get_num_threads()}")

        rows = {}
        plain_store = crop_store_for(cfg, None)
        rows["no cache"] = {"rate": pipeline_rate(split.train, plain_store, cfg, args.passes)}
        cached_store = crop_store_for(cfg, tmp / "cache")
        t0 = time.perf_counter()
        cached_store.build(split.train + split.val, max(1, cfg.workers))
        build_s = time.perf_counter() - t0
        files = list((tmp / "cache").rglob("*.npz"))
        cache_mb = sum(f.stat().st_size for f in files) / 2 ** 20
        rows["cache"] = {"rate": pipeline_rate(split.train, cached_store, cfg, args.passes)}

        for name, use_cache in () if args.pipeline_only else (("no cache", False), ("cache", True)):
            run = train_stage2(data, replace(cfg, cache=use_cache, name=name.replace(" ", "_")), log=lambda _: None)
            rows[name].update(train_s=run.history[0]["train_s"], val_s=run.history[0]["val_s"])

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}, "
          f"torch {torch.__version__}")
    print(f"cache: built in {build_s:.1f} s for {len(files)} images, {cache_mb / max(len(files), 1):.2f} MB per image")
    print("| crops read from | data pipeline (crops/s) | training epoch (s) | validation (s) |")
    print("|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['rate']:.1f} | {r.get('train_s', float('nan')):.1f} | {r.get('val_s', float('nan')):.1f} |")
    print(f"pipeline speed-up {rows['cache']['rate'] / rows['no cache']['rate']:.1f}x")
    if not args.pipeline_only:
        whole = {name: r["train_s"] + r["val_s"] for name, r in rows.items()}
        print(f"epoch + validation {whole['no cache'] / whole['cache']:.1f}x")


if __name__ == "__main__":
    main()
