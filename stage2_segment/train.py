"""`cascade train-stage2`: train the carpal-region UNet; validate at native resolution; keep best.pt and last.pt.

Resuming is automatic: when the run folder already holds last.pt (an interrupted or shorter run), training
continues after its epoch with its optimizer, scheduler and scaler states; `resume=false` starts over.
Stage2Trainer.fit reads as the run goes: set up, resume, the epochs (train, validate, save, record), summary.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import yaml

from convert.classes import CLASSES
from convert.dataset import clip_summary
from plumbing import offline
from plumbing.atomic import check_output, write_text
from plumbing.errors import CascadeError
from plumbing.run_lock import run_lock

from . import distributed, epoch_record
from .cache import EntryStore
from .checkpoint import check_same, load_checkpoint, load_weights, make_checkpoint, plain, save_checkpoint
from .config import Stage2Config
from .data import (Split, TrainCrops, class_indices, crop_store_for, preprocess_for, scan_labelled, split_items,
                   split_prior, write_folds)
from .file_priors import FilePriors
from .model import IN_CHANNELS, build_unet, dice_bce_loss
from .precision import Precision
from .progress import EpochBar
from .results import Results, TensorBoardScalars, best_row
from .validation import score_classes, validate

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


def train_stage2(data: str | Path, cfg: Stage2Config, log: Callable[[str], None] = print) -> Stage2Run:
    """Train on the labelled set at data (DCM/ + outputs_json/); returns where best.pt and last.pt are."""
    split = split_items(scan_labelled(data), cfg)
    dist, device = distributed.setup(cfg.device)
    if cfg.workers is None:  # resolved once, so config.yaml and the checkpoint record what ran
        cfg = replace(cfg, workers=distributed.default_workers())
    try:
        # one writer per run folder: a second training under the same name is refused, not interleaved
        with run_lock(cfg.run_dir, log) if dist.main else contextlib.nullcontext():
            return Stage2Trainer(data, cfg, split, dist, device, log if dist.main else (lambda _: None)).fit()
    finally:
        distributed.teardown(dist)


def check_settings(cfg: Stage2Config) -> None:
    """What can be checked of the settings without data (the device, the encoder and its weights), before
    anything is read or written."""
    distributed.pick_device(cfg.device, 0)
    build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels, cfg.encoder_weights,
               len(cfg.prior.indices))


class Stage2Trainer:
    """One training call in this process (one of several under torchrun). `fit` runs it; the methods below
    follow in the order it calls them. Only the main process writes files and logs."""

    def __init__(self, data: str | Path, cfg: Stage2Config, split: Split, dist: distributed.Dist,
                 device: torch.device, log: Callable[[str], None]):
        self.data, self.cfg, self.split, self.dist, self.device, self.log = data, cfg, split, dist, device, log
        self.best_path, self.last_path = cfg.run_dir / BEST_FILE, cfg.run_dir / LAST_FILE
        self.scored = score_classes(class_indices(cfg.train_classes))  # the channels best.pt is chosen by
        self.start, self.best = 1, -1.0  # the first epoch this call runs, the best validation score so far
        self.history: list[dict] = []  # this call's rows of the results table

    def fit(self) -> Stage2Run:
        resumed = self._setup_train()
        self._resume(resumed)
        # net, or net wrapped for DistributedDataParallel under torchrun (which sends rank 0's loaded weights)
        self.model = _parallel(self.net, self.dist, self.device)
        self._open_records(resumed)
        for epoch in range(self.start, self.cfg.epochs + 1):
            self._do_epoch(epoch)
        return self._finish()

    def _setup_train(self) -> dict | None:
        """Everything before the first epoch, in an order that fails before anything is written; returns
        last.pt's contents when this call resumes it."""
        cfg, device = self.cfg, self.device
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.precision = Precision.of(cfg.amp, cfg.amp_dtype, cfg.channels_last, device)  # mixed only pays on GPUs
        # what ran, not what the config asked: inference repeats it
        self.meta = {**checkpoint_meta(cfg), "split": split_digest(self.split), "precision": self.precision.as_dict()}
        resumed = _checkpoint_to_resume(cfg.resume, self.meta, self.last_path)
        check_output(cfg.run_dir / "config.yaml")  # an unwritable out fails now, not after the crop cache is built
        self.net = _build_net(cfg, device)
        # the prior file's format and image names checked before the images are read; its masks once they are
        every = self.split.train + self.split.val
        self.file_priors = FilePriors(cfg.prior.file, cfg.prior.indices, every) if cfg.prior.file else None
        self.store = self._load_images()
        # fused: one kernel for all parameters on the GPU, and no host sync per step for the scaler's inf check
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                           fused=device.type == "cuda")
        self.loader = _loader(TrainCrops(self.split.train, self.store, cfg, self.file_priors), cfg, self.dist, device)
        self.scheduler = _scheduler(self.optimizer, cfg, len(self.loader))
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # every crop has the input size: pick the fastest kernels once
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision.scaled)
        return resumed

    def _load_images(self) -> EntryStore:
        """The crop store with every image of this process's share loaded (and cached), the prior file's masks
        checked and kept, then the run folder."""
        cfg, split, dist = self.cfg, self.split, self.dist
        cache_dir = (Path(cfg.cache_dir) if cfg.cache_dir else offline.CACHE_DIR / "stage2") if cfg.cache else None
        store = crop_store_for(cfg, cache_dir)
        t0 = time.perf_counter()
        clips = store.build(split.train[dist.rank::dist.world] + split.val[dist.rank::dist.world],
                            max(1, cfg.workers))
        if clip_summary(clips):  # this process's share of the images, under torchrun
            self.log(clip_summary(clips))
        if self.file_priors is not None:  # every process: its crops may come from any training image
            self.file_priors.load(split.train + split.val, store, max(1, cfg.workers))
        distributed.barrier(dist)
        # the run folder is written once the network and every image have loaded: a failed start leaves nothing
        if dist.main:
            _write_run_folder(self.data, cfg, split, self.meta)
        if cache_dir is not None:
            self.log(f"crop cache {cache_dir}: ready in {time.perf_counter() - t0:.1f} s "
                     f"({len(split.train)} train / {len(split.val)} val images)")
        return store

    def _resume(self, resumed: dict | None) -> None:
        """The saved run's weights and optimizer, scheduler and scaler states, its next epoch and best score;
        best.pt rewritten if the run died between last.pt and best.pt."""
        if resumed is None:
            return
        load_weights(self.net, resumed, self.last_path)
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.scheduler.load_state_dict(resumed["scheduler"])
        if self.scaler.is_enabled() and resumed["scaler"]:  # a CPU run saved a disabled (empty) scaler
            self.scaler.load_state_dict(resumed["scaler"])
        self.start, self.best = int(resumed["epoch"]) + 1, float(resumed["best_score"])
        self.log(f"resuming {self.last_path} after epoch {resumed['epoch']} (best {self.best:.4f})")
        if self.dist.main:
            epoch_record.restore_best(resumed, self.best_path, self.log)

    def _open_records(self, resumed: dict | None) -> None:
        """results.csv (a new run's starts empty; a resumed one's continues from last.pt's rows) and the
        TensorBoard scalars."""
        self.results = Results(self.cfg.run_dir, self.cfg.train_classes)
        if self.dist.main:
            self.results.start(after_epoch=self.start - 1, saved=epoch_record.saved_rows(resumed))
        self.scalars = TensorBoardScalars(self.cfg.run_dir, enabled=self.dist.main)

    def _do_epoch(self, epoch: int) -> None:
        """Train, validate when due, then (the main process) checkpoint and record."""
        started = time.perf_counter()
        row, wait = self._train_epoch(epoch, started)
        due = epoch % self.cfg.val_every == 0 or epoch == self.cfg.epochs
        dice = self._validate_epoch(row) if due else None
        row["epoch_s"] = round(time.perf_counter() - started, 2)
        self.history.append(row)
        if self.dist.main:
            self._save_model(epoch, row, dice)
            self._record_epoch(row, dice, wait)
        distributed.barrier(self.dist)

    def _train_epoch(self, epoch: int, started: float) -> tuple[dict, float]:
        """One pass over the training crops: the epoch's row of the results table so far (loss, lr, speed) and
        the seconds spent waiting for data."""
        if self.dist.enabled:
            self.loader.sampler.set_epoch(epoch)
        with EpochBar(len(self.loader), f"epoch {epoch}/{self.cfg.epochs}", self.dist.world,
                      enabled=self.dist.main) as bar:
            loss_sum, seen, wait = self._train_steps(epoch, bar)
        sums = distributed.all_sum(self.dist, torch.tensor([loss_sum, seen], dtype=torch.float64))
        train_s = time.perf_counter() - started
        row = {"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"],
               "train_loss": float(sums[0] / max(sums[1], 1)), "train_s": round(train_s, 2),
               "samples_per_s": round(float(sums[1]) / train_s, 2), "data_wait_s": round(wait, 2)}
        if self.device.type == "cuda":  # what the batch and input size cost, for sizing them to the GPU
            row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(self.device) / 2 ** 20)
        return row, wait

    def _train_steps(self, epoch: int, bar: EpochBar) -> tuple[float, int, float]:
        """The optimizer steps of one epoch: (sum of loss x samples, samples, seconds spent waiting for data)."""
        self.model.train()
        loss_sum, seen, wait = 0.0, 0, 0.0
        start = time.perf_counter()
        for step, (x, y) in enumerate(self.loader):
            wait += time.perf_counter() - start
            loss = self._loss(*self._inputs(x, y))
            # float16's scaler skips steps with overflowing gradients; otherwise a NaN is a real divergence,
            # checked each step on the CPU and once an epoch on a GPU (a check per step would wait for the GPU)
            if not self.scaler.is_enabled() and self.device.type != "cuda" and not torch.isfinite(loss):
                raise CascadeError(f"training diverged: loss {loss.item()} at epoch {epoch} step {step} (lower lr)")
            self._optimizer_step(loss)
            loss_sum = loss_sum + loss.detach() * len(x)  # stays on the device: no sync per step
            seen += len(x)
            bar.step(len(x), loss_sum, seen)
            start = time.perf_counter()
        if not self.scaler.is_enabled() and not math.isfinite(float(loss_sum)):
            raise CascadeError(f"training diverged: mean loss {float(loss_sum) / max(seen, 1)} in epoch {epoch} "
                               "(lower lr)")
        return float(loss_sum), seen, wait

    def _inputs(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch on the device: the grey crops with the prior's channels beside them, and the labels' bits
        as (B, C, s, s) floats."""
        x = x.to(self.device, non_blocking=True)
        data = self.loader.dataset
        y, prior = split_prior(y.to(self.device, non_blocking=True), len(data.classes), len(data.prior_classes))
        if prior is not None:
            x = torch.cat([x, prior], 1)
        if self.cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y

    def _loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        amp_dtype = self.precision.dtype
        with torch.autocast(self.device.type, dtype=amp_dtype or torch.float16, enabled=amp_dtype is not None):
            logits = self.model(x)
        return dice_bce_loss(logits, y, self.cfg.dice_weight, self.cfg.bce_weight)

    def _optimizer_step(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def _validate_epoch(self, row: dict) -> np.ndarray:
        """Validation Dice per trained class, added to the epoch's row."""
        t_val = time.perf_counter()
        val = validate(self.net, self.split.val, self.store, self.cfg, self.device, self.dist, self.file_priors)
        dice, scored = val.mean(self.cfg.bent_share), self.scored
        row.update(val_s=round(time.perf_counter() - t_val, 2), val_carpal_dice=float(dice[scored].mean()),
                   val_mean_dice=float(dice.mean()),
                   val_carpal_straight=float(val.pose(False)[scored].mean()),
                   val_carpal_bent=float(val.pose(True)[scored].mean()), val_bent_images=int(val.counts[1]))
        row.update({f"dice/{c}": float(d) for c, d in zip(self.cfg.train_classes, dice)})
        return dice

    def _save_model(self, epoch: int, row: dict, dice: np.ndarray | None) -> None:
        """last.pt every epoch (with the states a resume needs, and the results rows: the epoch's commit point,
        see epoch_record); then best.pt when the carpal Dice improved; _record_epoch then writes results.csv."""
        improved = dice is not None and row["val_carpal_dice"] > self.best
        self.best = row["val_carpal_dice"] if improved else self.best
        val_dice = dict(zip(self.cfg.train_classes, dice.tolist())) if dice is not None else {}
        last = make_checkpoint(self.net, self.meta, epoch, self.best, val_dice, self.optimizer, self.scheduler,
                               self.scaler)
        rows = self.results.with_row(row)
        top = best_row(rows)
        save_checkpoint(epoch_record.committed(last, rows, top["epoch"] if top else None), self.last_path)
        if improved:
            save_checkpoint(epoch_record.best_checkpoint(last), self.best_path)

    def _record_epoch(self, row: dict, dice: np.ndarray | None, wait: float) -> None:
        """The row into results.csv and TensorBoard, and the epoch's log line."""
        self.results.add(row)
        self.scalars.add(row)
        self.log(f"epoch {row['epoch']}/{self.cfg.epochs}  loss {row['train_loss']:.4f}  lr {row['lr']:.2e}  "
                 f"{row['samples_per_s']:.1f} samples/s ({row['train_s']:.1f} s, data wait {wait:.1f} s)"
                 + (f"  val carpal Dice {row['val_carpal_dice']:.4f} (best {self.best:.4f}; straight "
                    f"{row['val_carpal_straight']:.4f}, bent {row['val_carpal_bent']:.4f}), "
                    f"all {row['val_mean_dice']:.4f}" if dice is not None else ""))

    def _finish(self) -> Stage2Run:
        """Where the run's files are, and the summary lines."""
        tensorboard = self.scalars.used
        self.scalars.close()
        top = self.results.best() if self.dist.main else None
        best = self.best_path if self.best_path.is_file() else self.last_path
        run = Stage2Run(self.cfg.run_dir, best, self.last_path, self.best, self.history,
                        top["epoch"] if top else None, self.results.path, self.results.plot)
        _summary(run, top, tensorboard, self.log)
        return run


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
        "preprocess": preprocess_for(cfg).as_dict(),
        "tta_hflip": cfg.tta_hflip,
        "score": "mean carpal validation Dice at native resolution" + (
            f", bent and straight wrists weighed {cfg.bent_share:g} : {1 - cfg.bent_share:g}"
            if cfg.bent_share is not None else ""),
        "config": cfg,
    })


def split_digest(split: Split) -> str:
    """Which images trained and which validated, by patient and file name (so a moved dataset still matches):
    resuming on other images or another fold would leak validation patients into training."""
    names = ["\n".join(sorted(f"{it.patient}/{it.name}" for it in part)) for part in (split.train, split.val)]
    return hashlib.sha1("\n|\n".join(names).encode()).hexdigest()


def _checkpoint_to_resume(resume: bool, meta: dict, last_path: Path) -> dict | None:
    """last.pt when this run resumes one, checked against this run's settings and split."""
    if not (resume and last_path.is_file()):
        return None
    resumed = load_checkpoint(last_path, need_resume=True)
    check_same(resumed, meta, last_path)  # checked before anything is written: a mismatch changes nothing
    return resumed


def _build_net(cfg: Stage2Config, device: torch.device) -> torch.nn.Module:
    net = build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels, cfg.encoder_weights,
                     len(cfg.prior.indices)).to(device)
    return net.to(memory_format=torch.channels_last) if cfg.channels_last else net


def _write_run_folder(data: str | Path, cfg: Stage2Config, split: Split, meta: dict) -> None:
    """The settings and the split; a new run also drops the old run's checkpoints."""
    run_dir = cfg.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text(run_dir / "config.yaml", yaml.safe_dump({"data": str(data), **meta["config"]}, sort_keys=False))
    write_folds(split, run_dir, cfg.seed)
    if not cfg.resume:
        for stale in (run_dir / BEST_FILE, run_dir / LAST_FILE):
            stale.unlink(missing_ok=True)


def _loader(dataset: TrainCrops, cfg: Stage2Config, dist: distributed.Dist,
            device: torch.device) -> torch.utils.data.DataLoader:
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


def _scheduler(optimizer: torch.optim.Optimizer, cfg: Stage2Config,
               steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, round(cfg.warmup_epochs * steps_per_epoch))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(cfg.scheduler, step, total, warmup, cfg.min_lr_ratio))


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


def _parallel(net: torch.nn.Module, dist: distributed.Dist, device: torch.device) -> torch.nn.Module:
    if not dist.enabled:
        return net
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(net, device_ids=ids)


def _summary(run: Stage2Run, top: dict | None, tensorboard: bool, log: Callable[[str], None]) -> None:
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
