"""Stage 2 checkpoints: a plain dict of tensors and Python values, loadable with torch.load(weights_only=True).

One file holds everything inference needs (classes, input size, region rule, preprocessing, thresholds);
last.pt adds the optimizer, scheduler and scaler states that resuming needs. Anything that does not fit
is refused with one line naming the file.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from convert.classes import CLASSES
from plumbing.atomic import save_torch
from plumbing.errors import CascadeError
from plumbing.values import shorten

FORMAT = "cascade-stage2"
VERSION = 1
ARCH = "Unet"
REQUIRED = ("format", "version", "arch", "state_dict", "encoder", "decoder_channels", "in_channels", "input_size",
            "train_classes", "paste_classes", "thresholds", "region", "preprocess", "epoch", "best_score")
RESUME = ("optimizer", "scheduler", "scaler")
# a checkpoint resumed under a config must agree on these, or the weights would not fit or mean something else
SAME_FOR_RESUME = ("encoder", "decoder_channels", "input_size", "train_classes", "prior_classes", "prior_min_carpals")
# keys added later, with what a checkpoint made before them meant
OPTIONAL = {"prior_classes": [], "prior_min_carpals": 0}


def plain(value):
    """Dataclasses, tuples and numpy scalars -> JSON-like Python values (safe for weights_only loading)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return float(value)  # numpy scalars


def make_checkpoint(model: torch.nn.Module, meta: dict, epoch: int, best_score: float, val_dice: dict,
                    optimizer=None, scheduler=None, scaler=None) -> dict:
    """meta: the model's description (see train.checkpoint_meta); states are included only when given."""
    ckpt = {"format": FORMAT, "version": VERSION, "arch": ARCH,
            # contiguous CPU copies: portable to any device, whatever memory format training used
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            **meta, "epoch": int(epoch), "best_score": float(best_score), "val_dice": plain(val_dice)}
    for key, obj in zip(RESUME, (optimizer, scheduler, scaler)):
        if obj is not None:
            ckpt[key] = obj.state_dict()
    return ckpt


def save_checkpoint(ckpt: dict, path: str | Path) -> None:
    save_torch(ckpt, path)  # a full disk: one line naming path, the previous file kept (the run resumes)


def load_checkpoint(path: str | Path, need_resume: bool = False) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CascadeError(f"{path}: " + ("is a folder; expected a stage 2 checkpoint file (.pt)" if path.is_dir()
                                          else "stage 2 checkpoint not found"))
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle, zip and torch errors alike: the file is not ours
        raise CascadeError(f"{path}: not a stage 2 checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CascadeError(f"{path}: not a stage 2 checkpoint (no '{FORMAT}' format tag)")
    if ckpt.get("version") != VERSION:
        raise CascadeError(f"{path}: stage 2 checkpoint version {ckpt.get('version')}, this code reads {VERSION}")
    missing = [k for k in REQUIRED + (RESUME if need_resume else ()) if k not in ckpt]
    if missing:
        raise CascadeError(f"{path}: stage 2 checkpoint lacks {', '.join(missing)}")
    for key in ("train_classes", "paste_classes", "prior_classes"):
        unknown = [c for c in ckpt.get(key, OPTIONAL.get(key)) if c not in CLASSES]
        if unknown:
            raise CascadeError(f"{path}: {key} holds unknown class name(s) {', '.join(map(str, unknown))}")
    if not set(ckpt["paste_classes"]) <= set(ckpt["train_classes"]):
        raise CascadeError(f"{path}: paste_classes are not all trained classes")
    if len(ckpt["thresholds"]) != len(ckpt["train_classes"]):
        raise CascadeError(f"{path}: {len(ckpt['thresholds'])} thresholds for {len(ckpt['train_classes'])} classes")
    return ckpt


def check_same(ckpt: dict, meta: dict, path: str | Path) -> None:
    """A checkpoint resumed under a config must describe the same network and classes, and have trained on the
    same images with the same validation fold (older checkpoints did not record the split)."""
    if "split" in ckpt and "split" in meta and ckpt["split"] != meta["split"]:
        raise CascadeError(f"{path}: was trained on other images or another validation fold than this run's "
                           "(other data, fold, folds file or seed); use another run name, or resume=false")
    for key in SAME_FOR_RESUME:
        old = ckpt.get(key, OPTIONAL.get(key))
        if plain(old) != plain(meta[key]):
            raise CascadeError(f"{path}: was trained with {key}={_short(old)}, the config asks for "
                               f"{_short(meta[key])} (use another run name, or resume=false to start over)")


def load_weights(model: torch.nn.Module, ckpt: dict, path: str | Path) -> None:
    try:
        model.load_state_dict(ckpt["state_dict"])
    except (RuntimeError, KeyError, TypeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__  # one line, however long torch's message
        raise CascadeError(f"{path}: weights do not fit the network it describes ({shorten(reason, 200)})") from None


def _short(value) -> str:
    return shorten(json.dumps(plain(value)), 80)
