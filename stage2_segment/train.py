"""`cascade train-stage2`: train the carpal-region UNet; validate at native resolution; keep best.pt and last.pt.

Resuming is automatic: when the run folder already holds last.pt (an interrupted or shorter run), training
continues after its epoch with its optimizer, scheduler and scaler states; `resume=false` starts over.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from convert.classes import CARPAL_INDICES, CLASSES
from convert.dataset import clip_summary
from convert.wrist_pose import mix_poses
from plumbing import offline
from plumbing.atomic import check_output, write_text
from plumbing.errors import CascadeError
from plumbing.parallel import bounded_map
from plumbing.run_lock import run_lock

from . import distributed, epoch_record
from .checkpoint import check_same, load_checkpoint, load_weights, make_checkpoint, plain, save_checkpoint
from .config import Stage2Config
from .data import (TrainCrops, class_indices, preprocess_of, scan_labelled, split_items, split_prior, store_of,
                   unpack_labels, val_crop, write_folds)
from .file_priors import FilePriors
from .model import IN_CHANNELS, build_unet, dice_bce_loss
from .precision import Precision
from .predict import predict_crops
from .prior import corrupt, gated
from .progress import EpochBar
from .results import Results, TensorBoardScalars, best_row

ONECYCLE_DIV = 25.0  # OneCycle starts at lr / 25 (PyTorch's default div_factor)
BEST_FILE, LAST_FILE = "best.pt", "last.pt"  # in the run folder


@dataclass
class Stage2Run:
    run_dir: Path
    best: Path
    last: Path
    best_score: float
    history: list[dict] = field(default_factory=list)  # this call's epochs; results.csv holds every epoch's
    best_epoch: int | None = None
    results: Path | None = None
    plot: Path | None = None


def checkpoint_meta(cfg: Stage2Config) -> dict:
    """What the network is and how to feed it: everything inference reads from the checkpoint."""
    return plain({
        "encoder": cfg.encoder, "decoder_channels": list(cfg.decoder_channels),
        "in_channels": IN_CHANNELS + len(cfg.prior.indices),
        "prior_classes": [CLASSES[c] for c in cfg.prior.indices],  # the full-hand masks it sees, channel order
        # a prior with fewer carpals is fed empty, as in training; 0 without a prior (nothing to gate)
        "prior_min_carpals": cfg.prior.gate,
        "input_size": cfg.input_size, "train_classes": cfg.train_classes, "paste_classes": cfg.paste_classes,
        "paste_largest_component": cfg.paste_largest_component, "thresholds": cfg.thresholds(), "region": cfg.region,
        "preprocess": preprocess_of(cfg).as_dict(),
        "tta_hflip": cfg.tta_hflip,
        "score": "mean carpal validation Dice at native resolution" + (
            f", bent and straight wrists weighed {cfg.bent_share:g} : {1 - cfg.bent_share:g}"
            if cfg.bent_share is not None else ""),
        "config": cfg,
    })


def split_digest(split) -> str:
    """Which images trained and which validated, by patient and file name (so a moved dataset still matches):
    resuming on other images or another fold would leak validation patients into training."""
    names = ["\n".join(sorted(f"{it.patient}/{it.name}" for it in part)) for part in (split.train, split.val)]
    return hashlib.sha1("\n|\n".join(names).encode()).hexdigest()


def lr_factor(kind: str, step: int, total: int, warmup: int, min_ratio: float) -> float:
    """Learning-rate multiplier at an optimizer step: linear warmup then cosine ('cosine'), or OneCycle's shape
    (cosine up from lr / 25, then cosine down; no momentum cycle). A pure function of the step, so a resumed
    run, even with more epochs, continues the curve."""
    if kind == "onecycle":
        if step < warmup:
            start = 1 / ONECYCLE_DIV
            return start + (1 - start) * (1 - math.cos(math.pi * step / warmup)) / 2
    elif step < warmup:
        return (step + 1) / warmup
    progress = min((step - warmup) / max(1, total - warmup), 1.0)
    return min_ratio + (1 - min_ratio) * (1 + math.cos(math.pi * progress)) / 2


def score_classes(train_classes: list[int]) -> list[int]:
    """Channels the best checkpoint is chosen by: the carpals (what stage 2 is for), else every trained class."""
    carpal = [i for i, c in enumerate(train_classes) if c in CARPAL_INDICES]
    return carpal or list(range(len(train_classes)))


@dataclass
class ValDice:
    """Validation Dice per trained class, summed over the straight (row 0) and bent (row 1) wrists."""
    sums: np.ndarray     # (2, C)
    counts: np.ndarray   # (2,) images

    def mean(self, bent_share: float | None) -> np.ndarray:
        """Per class, the poses mixed at bent_share (None: every image alike)."""
        return mix_poses(self.sums, self.counts, bent_share)

    def pose(self, bent: bool) -> np.ndarray:
        """Per class over one pose's images; NaN without any."""
        row = int(bent)
        return self.sums[row] / self.counts[row] if self.counts[row] else np.full(self.sums.shape[1], np.nan)


def validate(net: torch.nn.Module, items, store, cfg: Stage2Config, device: torch.device,
             dist: distributed.Dist, file_priors: FilePriors | None = None) -> ValDice:
    """Dice per trained class over the validation images, each scored on its un-jittered ground-truth region
    at native size (predictions resized up to the crop, never labels shrunk), straight and bent wrists apart
    so the best checkpoint can be chosen on the test set's mix of the two. Ranks share the images."""
    classes = class_indices(cfg.train_classes)
    thresholds = torch.tensor(cfg.thresholds(), dtype=torch.float32, device=device)[:, None, None]
    preprocess = preprocess_of(cfg)
    precision = Precision.of(cfg.amp, cfg.amp_dtype, cfg.channels_last, device)
    # per pose: Dice sums, then the image count; on the device, so only these few numbers come back to the host
    totals = torch.zeros(2, len(classes) + 1, dtype=torch.float64, device=device)
    shard = items[dist.rank::dist.world]

    prior_classes = cfg.prior.indices

    def load(it):
        entry = store.get(it)
        image, truth = val_crop(entry, classes, packed=True)  # packed: 4 bytes a pixel to the device, not 29
        prior = None
        if file_priors is not None:  # the base's own predictions: what the cascade will be fed
            prior = file_priors.crop(it.name, entry.region)
        elif prior_classes:  # the training corruption, seeded per image: every epoch sees the same priors
            seed = int.from_bytes(hashlib.sha1(it.name.encode()).digest()[:8], "little")
            prior = corrupt(entry.crop_masks(prior_classes, entry.region), prior_classes, cfg.prior,
                            np.random.default_rng([cfg.seed, seed]))
        if prior is not None:
            prior = gated(prior, prior_classes, cfg.prior.gate)
        return image, truth, entry.bent, prior

    loaded = bounded_map(load, shard, max(1, cfg.workers))
    net.eval()
    chunk: list = []
    for one in itertools.chain(loaded, [None]):  # streamed: a few batches of crops in memory, never the fold
        if one is not None:
            chunk.append(one)
        if chunk and (one is None or len(chunk) == cfg.val_batch):
            probs = predict_crops(net, [c for c, *_ in chunk], cfg.input_size, preprocess, device, cfg.tta_hflip,
                                  cfg.val_batch, precision.dtype is not None, precision.channels_last,
                                  priors=[p for *_, p in chunk] if prior_classes else None,
                                  amp_dtype=precision.dtype or torch.float16, on_device=True)
            for p, (_, packed, bent, _) in zip(probs, chunk):
                truth = unpack_labels(torch.from_numpy(packed)[None].to(device), len(classes))[0].bool()
                totals[int(bent), :-1] += device_dice(p >= thresholds, truth)  # thresholded as the paste does
                totals[int(bent), -1] += 1
            chunk = []
    net.train()
    totals = distributed.all_sum(dist, totals.cpu()).numpy()
    return ValDice(totals[:, :-1], totals[:, -1])


def device_dice(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """convert.dice.dice_per_class on the tensors' device: (C, h, w) bool -> (C,) float64 Dice, a class empty in
    both counting as 1."""
    inter = (pred & truth).sum((1, 2), dtype=torch.int64)
    total = pred.sum((1, 2), dtype=torch.int64) + truth.sum((1, 2), dtype=torch.int64)
    return torch.where(total > 0, 2 * inter.double() / total.clamp(min=1).double(), 1.0)


def _loader(dataset, cfg: Stage2Config, dist: distributed.Dist, device: torch.device):
    sampler = (torch.utils.data.DistributedSampler(dataset, dist.world, dist.rank, shuffle=True, seed=cfg.seed)
               if dist.enabled else None)
    return torch.utils.data.DataLoader(
        dataset, batch_size=cfg.batch, shuffle=sampler is None, sampler=sampler, num_workers=cfg.workers,
        pin_memory=device.type == "cuda", persistent_workers=cfg.workers > 0, drop_last=False,
        generator=torch.Generator().manual_seed(cfg.seed + dist.rank), worker_init_fn=_one_cv2_thread)


def _one_cv2_thread(_worker: int) -> None:
    """OpenCV in each loader worker on one thread: N workers each starting a thread per core oversubscribe the
    CPU that also feeds the GPU."""
    import cv2

    cv2.setNumThreads(1)


def check_settings(cfg: Stage2Config) -> None:
    """What can be checked of the settings without data (the device, the encoder and its weights), before
    anything is read or written."""
    distributed.pick_device(cfg.device, 0)
    build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels, cfg.encoder_weights,
               len(cfg.prior.indices))


def train_stage2(data: str | Path, cfg: Stage2Config, log: Callable[[str], None] = print) -> Stage2Run:
    """Train on the labelled set at data (DCM/ + outputs_json/); returns where best.pt and last.pt are."""
    found = scan_labelled(data)
    split = split_items(found, cfg)
    dist, device = distributed.setup(cfg.device)
    if cfg.workers is None:  # resolved once, so config.yaml and the checkpoint record what ran
        cfg = replace(cfg, workers=distributed.default_workers())
    try:
        # one writer per run folder: a second training under the same name is refused, not interleaved
        with run_lock(cfg.run_dir, log) if dist.main else contextlib.nullcontext():
            return _train(data, cfg, split, dist, device, log if dist.main else (lambda _: None))
    finally:
        distributed.teardown(dist)


@dataclass
class _Training:
    """What the steps of one training call share: built by _setup_train, carried through every epoch."""
    cfg: Stage2Config
    split: object
    dist: distributed.Dist
    device: torch.device
    log: Callable[[str], None]
    meta: dict
    net: torch.nn.Module
    model: torch.nn.Module  # net, or net wrapped for DistributedDataParallel under torchrun
    store: object
    file_priors: FilePriors | None  # prior.file's masks, when the config names one
    loader: torch.utils.data.DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    precision: Precision
    results: Results
    scalars: TensorBoardScalars
    start: int  # the first epoch this call runs
    best: float
    history: list[dict] = field(default_factory=list)

    @property
    def scored(self) -> list[int]:
        return score_classes(class_indices(self.cfg.train_classes))

    @property
    def best_path(self) -> Path:
        return self.cfg.run_dir / BEST_FILE

    @property
    def last_path(self) -> Path:
        return self.cfg.run_dir / LAST_FILE


def _train(data, cfg: Stage2Config, split, dist: distributed.Dist, device: torch.device, log) -> Stage2Run:
    state = _setup_train(data, cfg, split, dist, device, log)
    _do_train(state)
    return _finish(state)


def _setup_train(data, cfg: Stage2Config, split, dist: distributed.Dist, device: torch.device, log) -> _Training:
    """Everything before the first epoch, in an order that fails before anything is written."""
    last_path = cfg.run_dir / LAST_FILE
    torch.manual_seed(cfg.seed + dist.rank)
    precision = Precision.of(cfg.amp, cfg.amp_dtype, cfg.channels_last, device)  # mixed precision only pays on GPUs
    # what ran, not what the config asked: inference repeats it
    meta = {**checkpoint_meta(cfg), "split": split_digest(split), "precision": precision.as_dict()}
    resumed = _checkpoint_to_resume(cfg, meta, last_path)
    check_output(cfg.run_dir / "config.yaml")  # an unwritable out fails now, not after the crop cache is built
    net = _build_net(cfg, device)
    # the prior file's format and image names checked before the images are read; its masks once they are
    file_priors = FilePriors(cfg.prior.file, cfg.prior.indices, split.train + split.val) if cfg.prior.file else None
    store = _load_images(data, cfg, split, dist, meta, log, file_priors)
    # fused: one kernel for all parameters on the GPU, and no host sync per step for the scaler's inf check
    optimizer = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == "cuda")
    loader = _loader(TrainCrops(split.train, store, cfg, file_priors), cfg, dist, device)
    scheduler = _scheduler(optimizer, cfg, len(loader))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # every crop has the input size: pick the fastest kernels once
    scaler = torch.amp.GradScaler("cuda", enabled=precision.scaled)
    start, best = 1, -1.0
    if resumed is not None:
        start, best = _resume(resumed, net, optimizer, scheduler, scaler, last_path, log)
        if dist.main:
            epoch_record.restore_best(resumed, cfg.run_dir / BEST_FILE, log)
    results = Results(cfg.run_dir, cfg.train_classes)
    if dist.main:  # a new run's table starts empty; a resumed one's continues from last.pt's rows
        results.start(after_epoch=start - 1, saved=epoch_record.saved_rows(resumed))
    scalars = TensorBoardScalars(cfg.run_dir, enabled=dist.main)
    return _Training(cfg, split, dist, device, log, meta, net, _parallel(net, dist, device), store, file_priors,
                     loader, optimizer, scheduler, scaler, precision, results, scalars, start, best)


def _checkpoint_to_resume(cfg: Stage2Config, meta: dict, last_path: Path) -> dict | None:
    """last.pt when this run resumes one, checked against this run's settings and split."""
    if not (cfg.resume and last_path.is_file()):
        return None
    resumed = load_checkpoint(last_path, need_resume=True)
    check_same(resumed, meta, last_path)  # checked before anything is written: a mismatch changes nothing
    return resumed


def _build_net(cfg: Stage2Config, device: torch.device) -> torch.nn.Module:
    net = build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels, cfg.encoder_weights,
                     len(cfg.prior.indices)).to(device)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


def _load_images(data, cfg: Stage2Config, split, dist: distributed.Dist, meta: dict, log,
                 file_priors: FilePriors | None = None):
    """The crop store with every image of this process's share loaded (and cached), the prior file's masks
    checked and kept, then the run folder."""
    cache_dir = (Path(cfg.cache_dir) if cfg.cache_dir else offline.CACHE_DIR / "stage2") if cfg.cache else None
    store = store_of(cfg, cache_dir)
    t0 = time.perf_counter()
    clips = store.build(split.train[dist.rank::dist.world] + split.val[dist.rank::dist.world], max(1, cfg.workers))
    if clip_summary(clips):  # this process's share of the images, under torchrun
        log(clip_summary(clips))
    if file_priors is not None:  # every process: its crops may come from any training image
        file_priors.load(split.train + split.val, store, max(1, cfg.workers))
    distributed.barrier(dist)
    # the run folder is written once the network and every image have loaded: a failed start leaves nothing
    if dist.main:
        _write_run_folder(data, cfg, split, meta)
    if cache_dir is not None:
        log(f"crop cache {cache_dir}: ready in {time.perf_counter() - t0:.1f} s "
            f"({len(split.train)} train / {len(split.val)} val images)")
    return store


def _write_run_folder(data, cfg: Stage2Config, split, meta: dict) -> None:
    """The settings and the split; a new run also drops the old run's checkpoints."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump({"data": str(data), **meta["config"]}, sort_keys=False))
    write_folds(split, run_dir, cfg.seed)
    if not cfg.resume:
        for stale in (run_dir / BEST_FILE, run_dir / LAST_FILE):
            stale.unlink(missing_ok=True)


def _scheduler(optimizer, cfg: Stage2Config, steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg.scheduler, step, total, warmup, cfg.min_lr_ratio))


def _resume(resumed: dict, net, optimizer, scheduler, scaler, last_path: Path, log) -> tuple[int, float]:
    """The saved run's weights and optimizer, scheduler and scaler states; returns (first epoch to run, best)."""
    load_weights(net, resumed, last_path)
    optimizer.load_state_dict(resumed["optimizer"])
    scheduler.load_state_dict(resumed["scheduler"])
    if scaler.is_enabled() and resumed["scaler"]:  # a CPU run saved a disabled (empty) scaler
        scaler.load_state_dict(resumed["scaler"])
    best = float(resumed["best_score"])
    log(f"resuming {last_path} after epoch {resumed['epoch']} (best {best:.4f})")
    return int(resumed["epoch"]) + 1, best


def _parallel(net: torch.nn.Module, dist: distributed.Dist, device: torch.device) -> torch.nn.Module:
    if not dist.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _do_train(t: _Training) -> None:
    """The epochs left: train, validate when due, then (the main process) checkpoint and record."""
    for epoch in range(t.start, t.cfg.epochs + 1):
        if t.dist.enabled:
            t.loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        row, wait = _train_epoch(t, epoch, started)
        dice = _validate_epoch(t, row) if epoch % t.cfg.val_every == 0 or epoch == t.cfg.epochs else None
        row["epoch_s"] = round(time.perf_counter() - started, 2)
        t.history.append(row)
        if t.dist.main:
            _save_model(t, epoch, row, dice)
            _record_epoch(t, row, dice, wait)
        distributed.barrier(t.dist)


def _train_epoch(t: _Training, epoch: int, started: float) -> tuple[dict, float]:
    """One pass over the training crops: the epoch's row of the results table so far (loss, lr, speed) and the
    seconds spent waiting for data."""
    with EpochBar(len(t.loader), f"epoch {epoch}/{t.cfg.epochs}", t.dist.world, enabled=t.dist.main) as bar:
        loss_sum, seen, wait = _train_steps(t, epoch, bar)
    sums = distributed.all_sum(t.dist, torch.tensor([loss_sum, seen], dtype=torch.float64))
    train_s = time.perf_counter() - started
    row = {"epoch": epoch, "lr": t.optimizer.param_groups[0]["lr"], "train_loss": float(sums[0] / max(sums[1], 1)),
           "train_s": round(train_s, 2), "samples_per_s": round(float(sums[1]) / train_s, 2),
           "data_wait_s": round(wait, 2)}
    if t.device.type == "cuda":  # what the batch and input size cost, for sizing them to the GPU
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(t.device) / 2 ** 20)
    return row, wait


def _validate_epoch(t: _Training, row: dict) -> np.ndarray:
    """Validation Dice per trained class, added to the epoch's row."""
    t_val = time.perf_counter()
    val = validate(t.net, t.split.val, t.store, t.cfg, t.device, t.dist, t.file_priors)
    dice = val.mean(t.cfg.bent_share)
    row.update(val_s=round(time.perf_counter() - t_val, 2), val_carpal_dice=float(dice[t.scored].mean()),
               val_mean_dice=float(dice.mean()),
               val_carpal_straight=float(val.pose(False)[t.scored].mean()),
               val_carpal_bent=float(val.pose(True)[t.scored].mean()), val_bent_images=int(val.counts[1]))
    row.update({f"dice/{c}": float(d) for c, d in zip(t.cfg.train_classes, dice)})
    return dice


def _save_model(t: _Training, epoch: int, row: dict, dice: np.ndarray | None) -> None:
    """last.pt every epoch (with the states a resume needs, and the results rows: the epoch's commit point,
    see epoch_record); then best.pt when the carpal Dice improved; _record_epoch then writes results.csv."""
    improved = dice is not None and row["val_carpal_dice"] > t.best
    t.best = row["val_carpal_dice"] if improved else t.best
    val_dice = dict(zip(t.cfg.train_classes, dice.tolist())) if dice is not None else {}
    last = make_checkpoint(t.net, t.meta, epoch, t.best, val_dice, t.optimizer, t.scheduler, t.scaler)
    rows = t.results.with_row(row)
    top = best_row(rows)
    save_checkpoint(epoch_record.committed(last, rows, top["epoch"] if top else None), t.last_path)
    if improved:
        save_checkpoint(epoch_record.best_of(last), t.best_path)


def _record_epoch(t: _Training, row: dict, dice: np.ndarray | None, wait: float) -> None:
    """The row into results.csv and TensorBoard, and the epoch's log line."""
    t.results.add(row)
    t.scalars.add(row)
    t.log(f"epoch {row['epoch']}/{t.cfg.epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  "
          f"{row['samples_per_s']:.1f} samples/s ({row['train_s']:.1f} s, data wait {wait:.1f} s)"
          + (f"  val carpal Dice {row['val_carpal_dice']:.4f} (best {t.best:.4f}; straight "
             f"{row['val_carpal_straight']:.4f}, bent {row['val_carpal_bent']:.4f}), all {row['val_mean_dice']:.4f}"
             if dice is not None else ""))


def _finish(t: _Training) -> Stage2Run:
    """Where the run's files are, and the summary lines."""
    tensorboard = t.scalars.used
    t.scalars.close()
    top = t.results.best() if t.dist.main else None
    run = Stage2Run(t.cfg.run_dir, t.best_path if t.best_path.is_file() else t.last_path, t.last_path, t.best,
                    t.history, top["epoch"] if top else None, t.results.path, t.results.plot)
    _summary(run, top, tensorboard, t.log)
    return run


def _summary(run: Stage2Run, top: dict | None, tensorboard: bool, log) -> None:
    """The last lines of a run: the best epoch, its Dice, and where each file is."""
    if top is not None:
        log(f"best epoch {top['epoch']}: val carpal Dice {top['val_carpal_dice']:.4f}, all classes "
            f"{top['val_mean_dice']:.4f}")
    files = [("best checkpoint", run.best if run.best != run.last else None), ("last checkpoint (resumes)", run.last),
             ("results table", run.results), ("results plot", run.plot),
             ("settings", run.run_dir / "config.yaml"), ("validation split", run.run_dir / "folds.json")]
    log(f"run folder {run.run_dir}:")
    for what, path in files:
        if path is not None and path.is_file():
            log(f"  {what + ':':<28}{path}")
    if tensorboard:
        log(f"  {'TensorBoard scalars:':<28}{run.run_dir} (tensorboard --logdir {run.run_dir})")


def _train_steps(t: _Training, epoch: int, bar: EpochBar) -> tuple[float, int, float]:
    """The optimizer steps of one epoch: (sum of loss x samples, samples, seconds spent waiting for data)."""
    cfg, device = t.cfg, t.device
    t.model.train()
    loss_sum, seen, wait = 0.0, 0, 0.0
    amp_dtype = t.precision.dtype
    start = time.perf_counter()
    for step, (x, y) in enumerate(t.loader):
        wait += time.perf_counter() - start
        x = x.to(device, non_blocking=True)
        data = t.loader.dataset
        # bits -> (B, C, s, s) float labels, and the prior's channels beside the grey input
        y, prior = split_prior(y.to(device, non_blocking=True), len(data.classes), len(data.prior_classes))
        if prior is not None:
            x = torch.cat([x, prior], 1)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float16, enabled=amp_dtype is not None):
            logits = t.model(x)
        loss = dice_bce_loss(logits, y, cfg.dice_weight, cfg.bce_weight)
        # float16's scaler skips steps with overflowing gradients; otherwise a NaN is a real divergence, checked
        # each step on the CPU and once an epoch on a GPU (a check per step would wait for the GPU every step)
        if not t.scaler.is_enabled() and device.type != "cuda" and not torch.isfinite(loss):
            raise CascadeError(f"training diverged: loss {loss.item()} at epoch {epoch} step {step} (lower lr)")
        t.optimizer.zero_grad(set_to_none=True)
        t.scaler.scale(loss).backward()
        t.scaler.step(t.optimizer)
        t.scaler.update()
        t.scheduler.step()
        loss_sum = loss_sum + loss.detach() * len(x)  # stays on the device: no sync per step
        seen += len(x)
        bar.step(len(x), loss_sum, seen)
        start = time.perf_counter()
    if not t.scaler.is_enabled() and not math.isfinite(float(loss_sum)):
        raise CascadeError(f"training diverged: mean loss {float(loss_sum) / max(seen, 1)} in epoch {epoch} (lower lr)")
    return float(loss_sum), seen, wait
