"""A stage 1 file is checked before ultralytics sees it: ultralytics unpickles weights with
weights_only=False, so a .pt whose pickle names os.system (or any callable) would run it on loading. Only the
classes a YOLO checkpoint holds may appear: torch's and ultralytics' network modules and a few plain types;
anything else is refused with one line naming the file and the global, before any of it is executed."""

from __future__ import annotations

import importlib
import zipfile
from pathlib import Path

import torch

from plumbing.errors import DataError

# modules whose nn.Module subclasses make up a YOLO network (the classes only: no function is allowed)
MODULE_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.")
# plain values ultralytics and older checkpoints keep beside the network (arguments, metrics)
PLAIN_GLOBALS = ("ultralytics.utils.IterableSimpleNamespace", "types.SimpleNamespace",
                 "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray._reconstruct",
                 "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
                 "numpy._core.multiarray.scalar")


def _allowed(name: str):
    """The object a global of the pickle names, when it is on the allow-list; else None. Only modules of the
    allow-list are imported."""
    module, _, attr = name.rpartition(".")
    network = name.startswith(MODULE_PREFIXES)
    if not (network or name in PLAIN_GLOBALS) or not module:
        return None
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return None
    if name in PLAIN_GLOBALS or (isinstance(obj, type) and issubclass(obj, torch.nn.Module)):
        return obj
    return None


def checked_globals(path: str | Path) -> list:
    """The allowed objects the checkpoint at path names; a DataError naming the first global not allowed."""
    path = Path(path)
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (RuntimeError, ValueError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise DataError(path, f"not a loadable YOLO model (not a torch zip file: {type(exc).__name__})") from None
    allowed = []
    for name in sorted(names):
        obj = _allowed(name)
        if obj is None:
            raise DataError(path, f"refused: its pickle calls {name}, which no YOLO checkpoint holds (a model file "
                                  "must not run code; only network classes and plain values are read)")
        allowed.append(obj)
    return allowed


def safe_load(path: str | Path):
    """The checkpoint read by torch's weights_only unpickler, with the allowed network classes added."""
    path = Path(path)
    allowed = checked_globals(path)
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001  (pickle, zip and torch errors alike: not a checkpoint we read)
        reason = " ".join(str(exc).split())
        global_name = reason.split("Unsupported global: GLOBAL ", 1)[-1].split(" ")[0] if "GLOBAL " in reason else ""
        detail = f"refused: its pickle calls {global_name}" if global_name else \
            f"not a loadable YOLO model ({type(exc).__name__})"
        raise DataError(path, detail) from None


def check_stage1_file(path: str | Path) -> None:
    """Raise a one-line DataError unless the file is safe to hand to ultralytics."""
    safe_load(path)
