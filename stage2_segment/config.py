"""Stage 2 configuration: one typed dataclass, loaded from configs/stage2.yaml with `key=value` overrides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from configs import CONFIG_DIR, load_config
from convert.carpal_region import RegionConfig
from convert.classes import CARPALS, CLASSES
from convert.dataset import EDGE_TOLERANCE, MAX_EDGE_TOLERANCE
from convert.wrist_pose import TEST_BENT_SHARE
from plumbing.values import MAX_EPOCHS, check_fields, check_pair, check_range, did_you_mean

from .prior import PriorConfig

SCHEDULERS = ("cosine", "onecycle")
AMP_DTYPES = ("bfloat16", "float16")  # bfloat16 needs no GradScaler; float16 for GPUs without bfloat16
ENCODER_STRIDE = 32  # a 5-stage encoder halves the input 5 times: the side must divide by 2**5
DECODER_DEPTH = 5    # smp's UNet with a 5-stage encoder: one decoder width per stage


@dataclass
class JitterConfig:
    """Random change of the ground-truth region in training, so the model is used to stage 1's imprecise boxes."""

    shift: float = 0.08                            # centre moves up to this fraction of the region's side
    scale: tuple[float, float] = (0.85, 1.2)       # the side is multiplied by a factor in this range

    def __post_init__(self):
        check_range("shift", self.shift, 0, 0.5, hi_open=True)
        check_pair("scale", self.scale)
        check_range("scale", self.scale[0], 0, lo_open=True)


@dataclass
class AugmentConfig:
    rotate: float = 20.0          # degrees either way; bent wrists and tilted hands
    rotate_prob: float = 0.7
    hflip: float = 0.5            # probability; left and right hands are mirror images
    brightness: float = 0.15      # exposure differs between radiographs
    contrast: float = 0.15
    brightness_contrast_prob: float = 0.5
    clahe: bool = True            # preprocessing, not a random change: also applied at inference
    clahe_clip: float = 2.5
    clahe_tiles: int = 8

    def __post_init__(self):
        check_range("rotate", self.rotate, 0, 45, why="degrees")
        check_fields(self, ("rotate_prob", "hflip", "brightness_contrast_prob", "brightness", "contrast"), 0, 1)
        check_range("clahe_clip", self.clahe_clip, 0, lo_open=True)
        check_range("clahe_tiles", self.clahe_tiles, 1)


@dataclass
class NormalizeConfig:
    mean: float = 0.449           # grey value mean / std on [0, 1]; ImageNet's, averaged over RGB
    std: float = 0.226

    def __post_init__(self):
        check_range("std", self.std, 0, lo_open=True)  # divides: 0 trains to NaN


@dataclass
class Stage2Config:
    name: str = "train"
    out: str = "runs/stage2"
    input_size: int = 1024
    encoder: str = "resnet34"
    encoder_weights: str | None = None
    decoder_channels: tuple[int, ...] = (256, 128, 64, 32, 16)
    train_classes: list[str] = field(default_factory=lambda: list(CLASSES))
    paste_classes: list[str] = field(default_factory=lambda: list(CARPALS))
    paste_largest_component: bool = True
    epochs: int = 60
    batch: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"
    warmup_epochs: float = 1.0
    min_lr_ratio: float = 0.01
    dice_weight: float = 1.0
    bce_weight: float = 1.0
    workers: int | None = None  # None: this machine's cores shared by its processes (distributed.default_workers)
    device: str | int | None = None
    amp: bool = True
    amp_dtype: str = "bfloat16"
    channels_last: bool = True
    seed: int = 0
    folds_file: str | None = None
    fold: int = 0
    folds: int = 5
    resume: bool = True
    cache: bool = True
    cache_dir: str | None = None
    val_every: int = 1
    val_batch: int = 8
    bent_share: float | None = TEST_BENT_SHARE
    tta_hflip: bool = False
    threshold: float = 0.5
    class_thresholds: dict[str, float] = field(default_factory=dict)
    jitter: JitterConfig = field(default_factory=JitterConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    normalize: NormalizeConfig = field(default_factory=NormalizeConfig)
    region: RegionConfig = field(default_factory=RegionConfig)
    prior: PriorConfig = field(default_factory=PriorConfig)  # the full-hand prediction as extra input channels
    edge_tolerance: float = EDGE_TOLERANCE  # share of the side a polygon may reach past the image (convert.dataset)

    def __post_init__(self):
        # ValueError: configs.build turns it into one line naming the config file (and checked the types)
        self.class_thresholds = {str(k): float(v) for k, v in (self.class_thresholds or {}).items()}
        self.train_classes = list(self.train_classes)
        self.paste_classes = list(self.paste_classes)
        for key in ("train_classes", "paste_classes"):
            unknown = [c for c in getattr(self, key) if c not in CLASSES]
            if unknown:
                raise ValueError(f"{key}: unknown class(es) {', '.join(map(str, unknown))}"
                                 f"{did_you_mean(str(unknown[0]), CLASSES)}")
            if len(set(getattr(self, key))) != len(getattr(self, key)):
                raise ValueError(f"{key}: a class is listed twice")
        if not self.train_classes:
            raise ValueError("train_classes is empty")
        outside = [c for c in self.paste_classes if c not in self.train_classes]
        if outside:
            raise ValueError(f"paste_classes must be a subset of train_classes; not trained: {', '.join(outside)}")
        unknown = [c for c in self.class_thresholds if c not in self.train_classes]
        if unknown:
            raise ValueError(f"class_thresholds: {', '.join(unknown)} not in train_classes")
        if self.input_size < ENCODER_STRIDE or self.input_size % ENCODER_STRIDE:
            raise ValueError(f"input_size {self.input_size} must be a positive multiple of {ENCODER_STRIDE}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler {self.scheduler!r}: expected one of {', '.join(SCHEDULERS)}")
        check_range("folds", self.folds, 2)
        check_range("fold", self.fold, 0)  # fold < folds is checked against the split used
        check_fields(self, ("epochs", "batch", "val_every", "val_batch"), 1)
        check_range("epochs", self.epochs, hi=MAX_EPOCHS, why="more is a typo, not a schedule")
        if self.bent_share is not None:  # null: a plain mean
            check_range("bent_share", self.bent_share, 0, 1)
        if self.workers is not None:
            check_range("workers", self.workers, 0, why="0 loads in the main process")
        if self.amp_dtype not in AMP_DTYPES:
            raise ValueError(f"amp_dtype {self.amp_dtype!r}: expected one of {', '.join(AMP_DTYPES)}")
        for key in ("name", "out"):
            if not str(getattr(self, key)).strip():
                raise ValueError(f"{key}: need a non-empty name, got {getattr(self, key)!r}")
        check_range("lr", self.lr, 0, lo_open=True)
        check_range("edge_tolerance", self.edge_tolerance, 0, MAX_EDGE_TOLERANCE)
        check_fields(self, ("weight_decay", "warmup_epochs", "dice_weight", "bce_weight"), 0)
        check_range("min_lr_ratio", self.min_lr_ratio, 0, 1, lo_open=True)
        check_range("threshold", self.threshold, 0, 1, lo_open=True, hi_open=True)
        for name, value in self.class_thresholds.items():
            check_range(f"class_thresholds.{name}", value, 0, 1, lo_open=True, hi_open=True)
        if self.dice_weight + self.bce_weight == 0:
            raise ValueError("dice_weight and bce_weight: need one of them > 0, got both 0")
        channels = tuple(self.decoder_channels)
        if len(channels) != DECODER_DEPTH or min(channels) < 1:
            raise ValueError(f"decoder_channels: need {DECODER_DEPTH} positive numbers (one per UNet decoder stage), "
                             f"got {list(channels)}")

    @property
    def run_dir(self) -> Path:
        return Path(self.out) / self.name

    def thresholds(self) -> list[float]:
        """One threshold per trained class, in train_classes order."""
        return [float(self.class_thresholds.get(c, self.threshold)) for c in self.train_classes]


def load_stage2_config(path: str | Path | None = None, overrides: Sequence[str] | dict = ()) -> Stage2Config:
    """configs/stage2.yaml (or path) + `key=value` overrides, dotted for sections: `jitter.shift=0.1`."""
    return load_config(Stage2Config, path or CONFIG_DIR / "stage2.yaml", overrides)
