"""ultralytics kept off the network while stage 1 trains: it would download a font for its plots and, on a GPU,
weights for its AMP check. plumbing.offline has already told it it is offline (YOLO_OFFLINE) before any import;
these cover what it fetches all the same."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
from pathlib import Path


def is_offline() -> bool:
    """Whether ultralytics is told it is offline (our default; a user may export YOLO_OFFLINE=0)."""
    return os.environ.get("YOLO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on", "y", "t")


def font_without_download() -> None:
    """Ultralytics downloads Arial.ttf to label its plots; give it matplotlib's bundled DejaVu Sans instead."""
    target = Path(os.environ["YOLO_CONFIG_DIR"]) / "Ultralytics" / "Arial.ttf"
    spec = importlib.util.find_spec("matplotlib")
    if target.exists() or spec is None or not spec.submodule_search_locations:
        return
    source = Path(spec.submodule_search_locations[0]) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
    if source.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)


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


def amp_check_without_download(trainer) -> None:
    """on_pretrain_routine_start callback (it also runs in each DDP worker): ultralytics checks AMP on a GPU by
    loading yolo26n.pt, downloading it if missing, and even offline it tries that download once, which stalls
    where a firewall drops packets. Offline, make the check's downloads fail at once: ultralytics then keeps
    AMP on, as after any failed download; its other rules (no AMP on CPU, on GPUs known to fail) still apply."""
    import ultralytics.engine.trainer as engine

    if not is_offline() or getattr(engine.check_amp, "without_download", False):
        return
    real_check = engine.check_amp

    def check_amp(model) -> bool:
        with no_downloads():
            return real_check(model)

    check_amp.without_download = True
    engine.check_amp = check_amp
