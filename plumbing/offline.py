"""Offline-safe defaults for the libraries we drive, set before any of them is imported.

The tool must never reach the network on its own: no settings sync, update checks or pip installs at run time.
Values the user already exported win (setdefault). What ultralytics fetches even when told it is offline (a font,
the AMP check's weights) is stopped where stage 1 trains: stage1_detect/ultralytics_offline.py.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def _home_cache() -> Path:
    try:
        return Path.home() / ".cache" / "cascade"
    except RuntimeError:  # no HOME and no password entry
        return Path(tempfile.gettempdir()) / f"cascade-{os.getuid()}"


CACHE_DIR = Path(os.environ.get("CASCADE_CACHE_DIR") or _home_cache())

DEFAULTS = {
    "YOLO_CONFIG_DIR": str(CACHE_DIR / "ultralytics"),
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "MPLCONFIGDIR": str(CACHE_DIR / "matplotlib"),
}
WRITABLE = ("YOLO_CONFIG_DIR", "MPLCONFIGDIR")


def apply() -> None:
    """The environment above; where a settings folder cannot be made or written (a read-only or missing home),
    every cache moves to a private temporary folder, with one note, rather than failing every command."""
    global CACHE_DIR
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    unwritable = [key for key in WRITABLE if not _writable(Path(os.environ[key]))]
    if not unwritable:
        return
    fallback = _private_temp()
    print(f"note: cannot write {os.environ[unwritable[0]]} (read-only or missing home?); caches go to {fallback}",
          file=sys.stderr)
    for key in unwritable:
        os.environ[key] = str(fallback / key.lower())
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)
    if not _writable(CACHE_DIR):
        CACHE_DIR = fallback


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK | os.X_OK)


def _private_temp() -> Path:
    """$TMPDIR/cascade-UID when it is this user's, else a new private folder."""
    folder = Path(tempfile.gettempdir()) / f"cascade-{os.getuid()}"
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        if folder.stat().st_uid == os.getuid() and os.access(folder, os.W_OK | os.X_OK):
            return folder
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix="cascade-"))
