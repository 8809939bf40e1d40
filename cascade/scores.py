"""The scores of an evaluation: per image and class, the Dice of each method, and the tables made of them."""

from __future__ import annotations

import io
from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from convert.classes import CARPAL_INDICES, CLASSES
from convert.dataset import Clip
from convert.dice import dice_per_class, region_contains
from convert.images import AS_STORED
from convert.wrist_pose import TEST_BENT_SHARE, is_bent, pose_weights
from plumbing.errors import CascadeError


@dataclass
class Scores:
    """Per-image, per-class Dice of each method, and the carpal-region hit record."""

    images: list[str] = field(default_factory=list)
    patients: list[str] = field(default_factory=list)
    dice: dict[str, list[np.ndarray]] = field(default_factory=dict)
    hits: list[bool] = field(default_factory=list)
    bent: list[bool] = field(default_factory=list)  # per image: a bent wrist in the labels (convert.wrist_pose)
    sources: Counter = field(default_factory=Counter)
    curves: dict[int, list[np.ndarray]] = field(default_factory=dict)  # pasted class -> per image, Dice per SETTING
    clips: list[Clip] = field(default_factory=list)  # label polygons cut to their image (within the edge tolerance)
    oriented: list[str] = field(default_factory=list)  # images with an EXIF orientation tag, read as stored
    regions_of: str = ""  # whose regions `hits` and `sources` record (stage 1's or the base's), when told
    more_regions: dict[str, tuple[list[bool], Counter]] = field(default_factory=dict)  # other sources' hits, sources

    def add(self, name: str, truth: np.ndarray, predictions: dict[str, np.ndarray], region=None,
            patient: str = "") -> None:
        self.images.append(name)
        self.patients.append(patient)
        self.bent.append(is_bent(truth))
        for method, pred in predictions.items():
            self.dice.setdefault(method, []).append(dice_per_class(pred, truth))
        if region is not None:
            self.hits.append(region_contains(region, truth, CARPAL_INDICES))
            self.sources[region.source] += 1

    def note(self, sample) -> None:
        """What reading the sample's files warned about."""
        self.clips.extend(sample.clips)
        if sample.orientation != AS_STORED:
            self.oriented.append(str(sample.item.image))

    def weights(self, bent_share: float | None) -> np.ndarray:
        """Per-image weights that mix bent and straight wrists at `bent_share` (uniform: None, or one pose)."""
        return pose_weights(np.array(self.bent, bool), bent_share)

    def table(self, weights: np.ndarray | None = None) -> pd.DataFrame:
        """class x method Dice averaged over images (weighted if given), then the rows `mean` (29 classes) and
        `carpal_mean`."""
        per_class = pd.DataFrame({f"{m}_dice": np.average(v, axis=0, weights=weights) for m, v in self.dice.items()},
                                 index=list(CLASSES))
        per_class.loc["mean"] = per_class.iloc[:len(CLASSES)].mean()
        per_class.loc["carpal_mean"] = per_class.iloc[list(CARPAL_INDICES)].mean()
        per_class.index.name = "class"
        return per_class

    def markdown(self, digits: int = 4) -> str:
        return markdown_table(self.table(), digits)

    def pose_table(self, bent_share: float | None = TEST_BENT_SHARE) -> pd.DataFrame:
        """method x (mean, carpal mean) Dice on straight wrists, on bent ones, and mixed at `bent_share` bent,
        the real test set's mix (NaN where a pose has no image, and the mix then too)."""
        bent = np.array(self.bent, bool)
        mixable = bent_share is not None and 0 < bent.sum() < len(bent)
        groups = {"straight": ~bent, "bent": bent,
                  "test_mix": self.weights(bent_share) if mixable else np.zeros(len(bent))}
        carpal = list(CARPAL_INDICES)
        rows = {}
        for method, per_image in self.dice.items():
            d = np.stack(per_image)
            summaries = {"mean": d.mean(1), "carpal": d[:, carpal].mean(1)}
            rows[method] = {f"{g}_{s}": np.average(v, weights=w) if w.any() else np.nan
                            for g, w in groups.items() for s, v in summaries.items()}
        table = pd.DataFrame.from_dict(rows, orient="index")
        table.index.name = "method"
        return table

    @property
    def hit_rate(self) -> float:
        return float(np.mean(self.hits)) if self.hits else float("nan")


def join_over_base(over_stage1: Scores, over_base: Scores) -> Scores:
    """One table of both evaluations of the same held-out images: stage 1 and the cascade over it, then the
    base and the cascade over it (its columns renamed `cascade_over_base...`), with the region hit rate of both
    region sources: stage 1's and the base's."""
    if over_stage1.images != over_base.images:
        raise CascadeError("the two evaluations scored different images")
    renamed = {("base" if m == "base" else m.replace("cascade", "cascade_over_base", 1)): v
               for m, v in over_base.dice.items()}
    return replace(over_stage1, dice={**over_stage1.dice, **renamed}, regions_of="stage 1",
                   more_regions={"base": (over_base.hits, over_base.sources)})


def markdown_table(table: pd.DataFrame, digits: int = 4) -> str:
    lines = [f"| {table.index.name} | " + " | ".join(table.columns) + " |", "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(f"{v:.{digits}f}" for v in row) + " |" for name, row in table.iterrows()]
    return "\n".join(lines)


def table_csv(table: pd.DataFrame) -> str:
    buf = io.StringIO()
    table.to_csv(buf, float_format="%.6f", lineterminator="\n")
    return buf.getvalue()
