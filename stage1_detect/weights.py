"""Our settings travel inside the ultralytics .pt file, so one file is all `cascade predict` needs."""

from __future__ import annotations

from pathlib import Path

from plumbing.atomic import save_torch

from .safe_load import safe_load

META_KEY = "cascade_stage1"


def embed_meta(weights: Path, meta: dict) -> None:
    ckpt = safe_load(weights)  # ultralytics' own pickled checkpoint, read without running any of its code
    ckpt[META_KEY] = meta
    save_torch(ckpt, weights)  # a full disk: one line naming the weights
