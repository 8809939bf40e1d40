"""An epoch's record (its results row, last.pt, best.pt) consistent whatever moment the process dies.

last.pt is the commit point: written first, it holds every results row up to its epoch and the best epoch.
best.pt follows, then results.csv. A death before last.pt is published loses the epoch whole (it runs again);
after it, what the next run may lack is rebuilt from last.pt: results.csv from its rows, and best.pt from its
weights when its epoch was the best (best.pt of an earlier best epoch was published before that last.pt).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .checkpoint import RESUME, save_checkpoint

ROWS_KEY, BEST_EPOCH_KEY = "results", "best_epoch"


def committed(ckpt: dict, rows: list[dict], best_epoch: int | None) -> dict:
    """last.pt's dict with the results rows up to its epoch and the best epoch among them."""
    return {**ckpt, ROWS_KEY: [dict(r) for r in rows], BEST_EPOCH_KEY: best_epoch}


def saved_rows(ckpt: dict | None) -> list[dict] | None:
    """The rows a resumed last.pt committed (None from a checkpoint written before it kept them)."""
    rows = (ckpt or {}).get(ROWS_KEY)
    return [dict(r) for r in rows] if isinstance(rows, list) else None


def best_checkpoint(ckpt: dict) -> dict:
    """best.pt's dict from last.pt's: the same weights and description, without the resume states."""
    return {k: v for k, v in ckpt.items() if k not in (*RESUME, ROWS_KEY, BEST_EPOCH_KEY)}


def restore_best(resumed: dict, best_path: Path, log: Callable[[str], None]) -> None:
    """best.pt again when the run died after committing its best epoch's last.pt but before best.pt."""
    best_epoch = resumed.get(BEST_EPOCH_KEY)
    if best_epoch is None or best_epoch != resumed.get("epoch"):
        return
    if best_path.is_file():
        try:
            if torch.load(best_path, map_location="cpu", weights_only=True).get("epoch") == best_epoch:
                return
        except Exception:  # noqa: BLE001  (unreadable: rewritten below)
            pass
    save_checkpoint(best_checkpoint(resumed), best_path)
    log(f"restored {best_path} (epoch {best_epoch}) from last.pt: the run had stopped before writing it")
