"""Stage 2's network step alone: forward, loss and backward on random tensors at the config's input and batch.

No data pipeline: what the GPU can train, to set against the pipeline's crops/s (benchmarks/stage2_bench.py,
benchmarks/crop_bench.py). On CUDA the precisions run side by side in one process: float32, float16 with its
GradScaler, bfloat16 without one (amp_dtype); on the CPU float32 only (training ignores AMP there).

    .venv/bin/python benchmarks/stage2_step_bench.py --device cuda --steps 30            # configs/stage2.yaml
    .venv/bin/python benchmarks/stage2_step_bench.py --device cpu --steps 3 input_size=64 batch=2 encoder=resnet18
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import plumbing  # noqa: F401  (the offline environment first)
from stage2_segment.config import load_stage2_config
from stage2_segment.model import IN_CHANNELS, build_unet, dice_bce_loss
from stage2_segment.precision import DTYPES

ROOT = Path(__file__).resolve().parent.parent


def rate(cfg, device: torch.device, dtype: torch.dtype | None, steps: int, warmup: int) -> tuple[float, float]:
    """(samples/s, peak GPU MiB) of optimizer steps in autocast dtype (None: float32)."""
    torch.manual_seed(0)
    net = build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels).to(device)
    memory = torch.channels_last if cfg.channels_last and device.type == "cuda" else torch.contiguous_format
    net = net.to(memory_format=memory)
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, fused=device.type == "cuda")
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    s = cfg.input_size
    x = torch.randn(cfg.batch, IN_CHANNELS, s, s, device=device).contiguous(memory_format=memory)
    y = (torch.rand(cfg.batch, len(cfg.train_classes), s, s, device=device) > 0.9).float()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def step():
        with torch.autocast(device.type, dtype=dtype or torch.float16, enabled=dtype is not None):
            loss = dice_bce_loss(net(x), y, cfg.dice_weight, cfg.bce_weight)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):  # cuDNN's tuning and the allocator's first growth
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else float("nan")
    return steps * cfg.batch / (time.perf_counter() - t0), peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=ROOT / "configs" / "stage2.yaml")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("overrides", nargs="*", help="key=value over the config, e.g. batch=16 input_size=1024")
    args = ap.parse_args()
    cfg = load_stage2_config(args.config, args.overrides)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training sets it
    modes = {"float32": None}
    if device.type == "cuda":
        modes.update({f"{name} autocast": dtype for name, dtype in DTYPES.items()})
    rows = {name: rate(cfg, device, dtype, args.steps, args.warmup) for name, dtype in modes.items()}

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{platform.machine()}, {gpu}, torch {torch.__version__}; {cfg.encoder} UNet, input {cfg.input_size}, "
          f"batch {cfg.batch}, {len(cfg.train_classes)} classes, {args.steps} steps after {args.warmup}")
    print("| precision | samples/s | peak GPU (MiB) |")
    print("|---|---|---|")
    for name, (r, peak) in rows.items():
        print(f"| {name} | {r:.1f} | {peak:.0f} |")
    if device.type == "cuda":
        print(f"bfloat16 over float16 (with its scaler): "
              f"{rows['bfloat16 autocast'][0] / rows['float16 autocast'][0]:.2f}x")
    else:
        print("bfloat16 over float16: no mixed precision on the CPU (run on a GPU)")


if __name__ == "__main__":
    main()
