"""Dataset integrity check (in the spirit of nnU-Net's): everything wrong with a labelled folder, up front."""

from __future__ import annotations

import functools
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .classes import CLASSES
from .dataset import EDGE_TOLERANCE, Clip, clip_summary, scan, try_load_sample
from plumbing.errors import Problem
from plumbing.parallel import bounded_map
from .images import AS_STORED, orientation_summary


@dataclass
class CheckReport:
    root: Path
    images: int = 0
    patients: int = 0
    valid: int = 0
    sizes: Counter = field(default_factory=Counter)        # "WxH" -> images
    formats: Counter = field(default_factory=Counter)      # "grey 8-bit" -> images
    classes_per_image: Counter = field(default_factory=Counter)  # distinct classes -> images
    polygons_per_class: Counter = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)  # warnings: polygons cut to the image, within the tolerance
    oriented: list[tuple[str, int]] = field(default_factory=list)  # warnings: (image, EXIF orientation tag)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, max_problems: int = 20) -> str:
        lines = [f"dataset {self.root}",
                 f"  images: {self.images} ({self.valid} valid), patients: {self.patients}",
                 "  sizes: " + ", ".join(f"{k} x{v}" for k, v in self.sizes.most_common(5)),
                 "  formats: " + ", ".join(f"{k} x{v}" for k, v in self.formats.most_common()),
                 "  classes per image: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.classes_per_image.items()))]
        odd = [f"{CLASSES[c]} {n}" for c, n in sorted(self.polygons_per_class.items()) if n != self.valid]
        if odd:
            lines.append(f"  polygon count differs from the image count for: {', '.join(odd)}")
        warnings = [str(c) for c in self.clips] + [f"{p}: EXIF orientation {v} ignored: read as stored"
                                                    for p, v in self.oriented]
        if warnings:  # not problems: these images are read
            lines.append(f"  warnings: {len(warnings)}")
            lines += [f"    {line}" for line in filter(None, (clip_summary(self.clips), orientation_summary(
                [p for p, _ in self.oriented])))]
            lines += [f"    {w}" for w in warnings[:max_problems]]
            if len(warnings) > max_problems:
                lines.append(f"    ... and {len(warnings) - max_problems} more")
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"    {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"    ... and {len(self.problems) - max_problems} more")
        return "\n".join(lines)


def _describe(image) -> str:
    channels = "grey" if image.ndim == 2 or image.shape[2] == 1 else "colour"
    return f"{channels} {image.dtype.itemsize * 8}-bit"


def check_dataset(root: str | Path, workers: int = os.cpu_count() or 1,
                  progress: Callable[[int, int], None] | None = None,
                  edge_tolerance: float = EDGE_TOLERANCE) -> CheckReport:
    """Decode every image and validate every annotation; all problems are collected, none raised."""
    listing = scan(root)
    report = CheckReport(Path(root), images=len(listing.items), patients=len(listing.patients),
                         problems=list(listing.problems))
    load = functools.partial(try_load_sample, edge_tolerance=edge_tolerance)
    for done, (sample, problems) in enumerate(bounded_map(load, listing.items, workers), 1):
        report.problems.extend(problems)
        if sample is not None:
            report.valid += 1
            report.clips.extend(sample.clips)
            if sample.orientation != AS_STORED:
                report.oriented.append((str(sample.item.image), sample.orientation))
            h, w = sample.hw
            report.sizes[f"{w}x{h}"] += 1
            report.formats[_describe(sample.image)] += 1
            present = {c for c, _ in sample.polygons}
            report.classes_per_image[len(present)] += 1
            report.polygons_per_class.update(c for c, _ in sample.polygons)
        if progress:
            progress(done, len(listing.items))
    return report
