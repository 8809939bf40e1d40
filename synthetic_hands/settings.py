"""Every tunable number of the generator (pose, annotation points, rendering, film); defaults equal
configs/synth.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

from configs import CONFIG_DIR, load_config
from plumbing.values import check_pair, check_range


MIN_SIZE, MAX_SIZE = 128, 4096  # image sides generate() accepts


def _check_ranges(obj, signed: Sequence[str] = (), positive: Sequence[str] = (), skip: Sequence[str] = ()) -> None:
    """Every field of obj but `skip`: a [lo, hi] pair needs lo <= hi; a number (a pair's lo) >= 0 unless
    `signed`, > 0 if `positive`."""
    for f in fields(obj):
        if f.name in skip:
            continue
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
class FilmConfig:
    """How the film around the hand differs from the competition's upright, film-filling hands. Every effect
    is off by default (the generator then writes what it wrote before, byte for byte)."""
    fingers_down_prob: float = 0.0
    turn_prob: float = 0.0
    turn_deg: tuple[float, float] = (15.0, 90.0)
    far_prob: float = 0.0
    far_scale: tuple[float, float] = (0.5, 0.94)
    forearm_visible_frac: float = 0.3
    collimation_prob: float = 0.0
    collimation_side_prob: float = 0.5
    collimation_frac: tuple[float, float] = (0.02, 0.12)
    collimation_forearm_frac: float = 0.5
    collimation_bright_prob: float = 0.7
    collimation_bright: tuple[float, float] = (0.85, 1.0)
    collimation_dark: tuple[float, float] = (0.0, 0.06)
    letter_prob: float = 0.0
    letters: tuple[str, ...] = ("R", "L", "Hand", "Wrist")
    letter_height_frac: tuple[float, float] = (0.025, 0.05)
    letter_stroke_frac: float = 0.12
    logo_prob: float = 0.0
    logo_frac: tuple[float, float] = (0.04, 0.08)
    logo_letters: int = 3
    mark_level: tuple[float, float] = (0.85, 1.0)
    mark_clearance_frac: float = 0.02
    mark_tries: int = 40
    second_hand_prob: float = 0.0
    second_hand_reach_frac: tuple[float, float] = (0.06, 0.2)
    bone_density: tuple[float, float] = (1.0, 1.0)
    child_prob: float = 0.0
    child_carpals: tuple[int, int] = (1, 7)

    def __post_init__(self):
        if not self.letters or not all(isinstance(t, str) and t.strip() and t.isascii() for t in self.letters):
            raise ValueError(f"letters: need a list of non-empty ASCII texts (what the film font draws), "
                             f"got {list(self.letters)}")
        _check_ranges(self, positive=("far_scale", "letter_height_frac", "letter_stroke_frac", "logo_frac",
                                              "logo_letters", "mark_tries"),
                      skip=("letters",))
        for key in ("fingers_down_prob", "turn_prob", "far_prob", "collimation_prob", "collimation_side_prob",
                    "collimation_bright_prob", "letter_prob", "logo_prob", "second_hand_prob", "child_prob"):
            check_range(key, getattr(self, key), 0, 1)
        check_range("turn_deg", self.turn_deg[1], hi=90, why="a quarter turn; fingers_down_prob turns further")
        check_range("far_scale", self.far_scale[1], hi=1.5, why="a hand larger than this does not fit a film")
        for key in ("collimation_frac", "second_hand_reach_frac", "letter_height_frac", "logo_frac"):
            check_range(key, getattr(self, key)[1], hi=0.5, hi_open=True, why="of the film's side")
        for key in ("collimation_bright", "collimation_dark", "mark_level"):
            check_range(key, getattr(self, key)[1], hi=1, why="display levels, 1 is white")
        check_range("forearm_visible_frac", self.forearm_visible_frac, hi=2, why="of the hand's length")
        check_range("collimation_forearm_frac", self.collimation_forearm_frac, hi=2, why="of the hand's length")
        check_range("letter_stroke_frac", self.letter_stroke_frac, hi=0.5, why="of the text's height")
        check_range("mark_clearance_frac", self.mark_clearance_frac, hi=0.5, hi_open=True, why="of the film's side")
        check_range("child_carpals", self.child_carpals[1], hi=7, why="ossified carpals of a child: 8 is an adult")


@dataclass
class SynthConfig:
    pose: PoseConfig = field(default_factory=PoseConfig)
    points: PointsConfig = field(default_factory=PointsConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    film: FilmConfig = field(default_factory=FilmConfig)


def load_synth_config(path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> SynthConfig:
    """configs/synth.yaml (or path), updated by `section.key=value` overrides."""
    return load_config(SynthConfig, CONFIG_DIR / "synth.yaml" if path is None else path, overrides)


