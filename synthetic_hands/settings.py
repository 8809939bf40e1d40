"""Every tunable number of the generator (pose, annotation points, rendering); defaults equal configs/synth.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from configs import CONFIG_DIR, load_config
from plumbing.values import check_pair, check_range


MIN_SIZE, MAX_SIZE = 128, 4096  # image sides generate() accepts


def _check_ranges(obj, signed: Sequence[str] = (), positive: Sequence[str] = ()) -> None:
    """Every field of obj: a [lo, hi] pair needs lo <= hi; a number (a pair's lo) >= 0 unless `signed`,
    > 0 if `positive`."""
    for f in fields(obj):
        value = getattr(obj, f.name)
        if isinstance(value, tuple):
            check_pair(f.name, value)
            value = value[0]
        if f.name in positive or f.name not in signed:
            check_range(f.name, value, 0, lo_open=f.name in positive)


@dataclass
class PoseConfig:
    rotation_deg: float = 12.0
    scale: tuple[float, float] = (0.94, 1.12)
    shift_frac: float = 0.07
    spread_deg: tuple[float, float] = (-3.0, 6.0)
    joint_deg: float = 2.5
    thumb_deg: float = 6.0
    bent_wrist_prob: float = 0.3
    bent_deg: tuple[float, float] = (12.0, 30.0)
    bent_foreshorten: tuple[float, float] = (0.6, 0.85)
    natural_wrist_deg: float = 3.0
    size_jitter: float = 0.04
    carpal_jitter_px: float = 4.0
    wobble: float = 0.04
    margin_frac: float = 0.01
    max_tries: int = 30

    def __post_init__(self):
        _check_ranges(self, signed=("spread_deg",), positive=("scale", "bent_foreshorten", "max_tries"))
        check_range("bent_wrist_prob", self.bent_wrist_prob, 0, 1)
        check_range("margin_frac", self.margin_frac, 0, 0.5, hi_open=True, why="a margin on each side")


@dataclass
class PointsConfig:
    spacing_px: tuple[float, float] = (1.2, 14.0)
    min_points: int = 8

    def __post_init__(self):
        _check_ranges(self, positive=("spacing_px",))  # spacing is drawn log-uniform
        check_range("min_points", self.min_points, 3, why="a polygon")


@dataclass
class RenderConfig:
    background: tuple[float, float] = (0.02, 0.08)
    background_gradient: float = 0.04
    tissue: tuple[float, float] = (0.25, 0.4)
    tissue_ramp_px: float = 60.0
    tissue_margin: float = 1.0
    cortex: tuple[float, float] = (1.0, 1.3)
    medulla: tuple[float, float] = (0.35, 0.5)
    cortex_frac: float = 0.15
    bone_jitter: float = 0.08
    texture: float = 0.1
    texture_cells: int = 128
    gain: tuple[float, float] = (0.8, 1.1)
    gamma: tuple[float, float] = (0.8, 1.25)
    headroom: tuple[float, float] = (1.0, 1.1)
    noise: tuple[float, float] = (0.01, 0.035)
    blur_px: tuple[float, float] = (0.6, 2.0)

    def __post_init__(self):
        _check_ranges(self, positive=("texture_cells",))


@dataclass
class SynthConfig:
    pose: PoseConfig = field(default_factory=PoseConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)


def load_synth_config(path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> SynthConfig:
    """configs/synth.yaml (or path), updated by `section.key=value` overrides."""
    return load_config(SynthConfig, CONFIG_DIR / "synth.yaml" if path is None else path, overrides)


