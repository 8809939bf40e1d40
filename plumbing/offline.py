"""Offline-safe defaults for the libraries we drive, set before any of them is imported.

The tool must never reach the network on its own: no settings sync, update checks or pip installs at run time.
Values the user already exported win (setdefault).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

CACHE_DIR = Path(os.environ.get("CASCADE_CACHE_DIR", Path.home() / ".cache" / "cascade"))

DEFAULTS = {
    "YOLO_CONFIG_DIR": str(CACHE_DIR / "ultralytics"),
    "YOLO_OFFLINE": "1",
    "YOLO_AUTOINSTALL": "0",
    "NO_ALBUMENTATIONS_UPDATE": "1",
    "HF_HUB_OFFLINE": "1",
    "MPLCONFIGDIR": str(CACHE_DIR / "matplotlib"),
}


def apply() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    for key in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR"):
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True)


def ensure_font() -> None:
    """Ultralytics downloads Arial.ttf to label its plots; give it matplotlib's bundled DejaVu Sans instead."""
    import importlib.util
    import shutil

    target = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    spec = importlib.util.find_spec("matplotlib")
    if target.exists() or spec is None or not spec.submodule_search_locations:
        return
    source = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


def is_offline() -> bool:
    """Whether ultralytics is told it is offline (our default; a user may export YOLO_OFFLINE=0)."""
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on", "y", "t")


@contextlib.contextmanager
def no_downloads():
    """Within the block, ultralytics' downloads raise ConnectionError at once instead of trying the network."""
    from ultralytics.utils import downloads

    def refuse(url, *args, **kwargs):
        raise ConnectionError(f"offline: not downloading {url}")

    real, downloads.safe_download = downloads.safe_download, refuse
    try:
        yield
    finally:
        downloads.safe_download = real
