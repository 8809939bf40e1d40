"""Stage 1 configuration: our own keys typed, everything else passed to ultralytics as its CLI takes it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from configs import CONFIG_DIR, load_config, parse_overrides
from convert.carpal_region import RegionConfig
from plumbing.errors import CascadeError, DataError
from plumbing.values import check_range, did_you_mean

OWN_KEYS = ("model", "conf", "region_conf", "region_grow", "region")
MODEL_NAME = re.compile(r"^(yolov8|yolo11)[nslmx]-seg$")


@dataclass
class Stage1Config:
    model: str = "yolo11m-seg"
    conf: float = 0.01
    region_conf: float = 0.01  # a detected carpal region at least this confident is the region (else the rule's
    #                            chain); configs/stage1.yaml says why it is low
    region_grow: float = 1.0   # a detected region's side is multiplied by this (configs/stage1.yaml says why)
    region: RegionConfig = field(default_factory=RegionConfig)
    ultralytics: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        # checked here, not at predict time: conf is saved into the trained weights
        check_range("conf", self.conf, 0, 1)
        check_range("region_conf", self.region_conf, 0, 1)
        check_range("region_grow", self.region_grow, 1, 3)  # below 1 would cut what the detector found


def load_stage1_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Stage1Config:
    """configs/stage1.yaml (or path) + `key=value` overrides; keys that are not ours go to ultralytics and must
    be ones ultralytics knows."""
    from ultralytics.cfg import DEFAULT_CFG_DICT

    routed = {}
    for key, value in parse_overrides(overrides).items():
        top = key.split(".")[0]
        if top in OWN_KEYS or top == "ultralytics":
            routed[key] = value
        elif key in DEFAULT_CFG_DICT:
            routed[f"ultralytics.{key}"] = value
        else:
            raise CascadeError(f"unknown setting {key!r}: not a stage 1 key ({', '.join(OWN_KEYS)}) nor an "
                               f"ultralytics training argument{did_you_mean(key, [*OWN_KEYS, *DEFAULT_CFG_DICT])}")
    path = path or CONFIG_DIR / "stage1.yaml"
    cfg = load_config(Stage1Config, path, routed)
    unknown = sorted(set(cfg.ultralytics) - set(DEFAULT_CFG_DICT))
    if unknown:
        shown = ", ".join(key + did_you_mean(key, DEFAULT_CFG_DICT) for key in unknown)
        raise DataError(path, f"unknown ultralytics argument(s) {shown}")
    for ours in ("data", "model", "task", "mode"):
        if ours in cfg.ultralytics:
            raise DataError(path, f"ultralytics.{ours}: set by cascade, not under `ultralytics:`")
    return cfg


def resolve_model(model: str) -> str:
    """A size name builds from ultralytics' bundled YAML (no download); a .pt must be a file the user has."""
    path = Path(model)
    if path.suffix == ".pt":
        if not path.is_file():
            raise CascadeError(f"{model}: weights file not found (pretrained weights are not downloaded; "
                               "fetch them on an online machine and pass the path)")
        return str(path)
    if path.suffix in (".yaml", ".yml"):
        return model
    if not MODEL_NAME.match(model):
        raise CascadeError(f"model {model!r}: expected e.g. yolo11n-seg, yolov8s-seg (sizes n s m l x) or a .pt path")
    return f"{model}.yaml"
