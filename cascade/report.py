"""The tables of an evaluation as files: dice.csv, pose.csv, dice.md and dice.png (`cascade evaluate`'s report
folder, which its command fills, paste.json included), and the demo's test-set scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from convert.carpal_region import describe_sources
from convert.classes import CLASSES
from convert.wrist_pose import BENT_DEGREES, TEST_BENT_SHARE, TRAIN_BENT_SHARE
from plumbing.atomic import atomic_dir, atomic_path, write_text
from plumbing.errors import DataError

from .paste import PastePlan
from .scores import Scores, markdown_table, table_csv

REPORT_FILES = ("dice.csv", "pose.csv", "dice.md", "dice.png", "paste.json")


def check_report_folder(out: str | Path) -> None:
    """The report replaces its folder whole: a folder holding anything else is refused (before any scoring)."""
    out = Path(out)
    if out.is_dir():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in REPORT_FILES)
        if foreign:
            raise DataError(out, f"holds {foreign[0]}, which no report wrote; the report replaces its folder whole, "
                                 "so give a new or empty folder")


def write_tables(scores: Scores, out: Path, plan: PastePlan | None = None, title: str = "",
                 bent_share: float | None = TEST_BENT_SHARE) -> dict[str, Path]:
    """dice.csv, pose.csv, dice.md (which describes `plan`, if any) and dice.png in the folder `out`.
    `bent_share` must be the one the plan was chosen with (evaluate_folds')."""
    table, poses = scores.table(), scores.pose_table(bent_share)
    paths = {"csv": out / "dice.csv", "pose": out / "pose.csv", "markdown": out / "dice.md", "chart": out / "dice.png"}
    write_text(paths["csv"], table_csv(table))
    write_text(paths["pose"], table_csv(poses))
    mixed = bool(poses["test_mix_mean"].notna().any())  # pose_table leaves the mix empty where it cannot mix
    lines = [f"# {title or 'Dice on held-out patients'}", "",
             f"{len(scores.images)} images, Dice at native resolution, averaged over images.", "",
             scores.markdown(4), "", *_region_lines(scores)]
    if "cascade_tuned" in scores.dice:
        lines.append("cascade_tuned: each pasted class at its tuned threshold, with every blob or only the "
                     "largest, scored honestly: the held-out patients are split in two halves and each half is "
                     "scored at the setting chosen on the other. paste.json keeps the settings chosen on all of them.")
    lines += _pose_lines(scores, poses, bent_share if mixed else None)
    if plan is not None:
        lines += _plan_lines(plan, mixed)
    write_text(paths["markdown"], "\n".join(lines) + "\n")
    _chart(table, paths["chart"], title)
    return paths


def _region_lines(scores: Scores) -> list[str]:
    """The carpal-region hit rate of each region source scored."""
    lines = []
    regions = {scores.regions_of: (scores.hits, scores.sources), **scores.more_regions}
    for whose, (hits, sources) in regions.items():
        if hits:
            of = f" of {whose}'s regions" if whose else ""
            lines += [f"Carpal-region hit rate{of} (all 8 carpal bones inside the region): {np.mean(hits):.3f}; "
                      f"region sources: {describe_sources(sources)}.", ""]
    return lines


def _pose_lines(scores: Scores, poses, mixed_at: float | None) -> list[str]:
    """The pose table and what it means; `mixed_at`: the share of bent wrists test_mix holds, None: unmixed."""
    n_bent = sum(scores.bent)
    mix = (f"test_mix weighs the two poses {100 * mixed_at:.0f} : {100 - 100 * mixed_at:.0f} (bent : straight), "
           "an estimate of the score on a test set of that mix (with few images of a pose, it inherits their "
           "noise)." if mixed_at is not None else
           "this fold cannot be mixed (a pose has no image, or mixing is off): test_mix is empty.")
    return ["", f"## By wrist pose: {len(scores.bent) - n_bent} straight, {n_bent} bent", "",
            markdown_table(poses, 4), "",
            f"Bent: the middle metacarpal turned more than {BENT_DEGREES:g} degrees from the radius in the labels. "
            f"Bent wrists were {TRAIN_BENT_SHARE:.0%} of the real training images but {TEST_BENT_SHARE:.0%} of the "
            f"test images; {mix}", ""]


def _plan_lines(plan: PastePlan, mixed: bool) -> list[str]:
    """Which classes the plan pastes, and how they were chosen."""
    blob = set(plan.largest or ())
    names = ", ".join(f"{CLASSES[c]} ({plan.thresholds[c]:.2f}{', largest blob' if c in blob else ''})"
                      for c in plan.classes) or "none"
    return ["Which classes to paste, and their thresholds, were chosen on "
            + ("the test mix of poses above." if mixed else "the plain mean over images."),
            f"Classes whose Dice the cascade raised on these held-out images, with their thresholds and whether "
            f"only their largest blob is kept (pasted by `--paste-file`): {names}."]


def _chart(table, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(12, 4.5), dpi=100)
    x = np.arange(len(table))
    width = 0.8 / len(table.columns)
    for k, column in enumerate(table.columns):
        ax.bar(x + (k - (len(table.columns) - 1) / 2) * width, table[column], width, label=column.replace("_dice", ""))
    ax.set_xticks(x, table.index, rotation=70, fontsize=8)
    low = float(np.nanmin(table.to_numpy()))
    ax.set_ylim(max(0.0, low - 0.05), 1.0)
    ax.set_ylabel("Dice")
    ax.set_title(title or "Dice per class, held-out patients")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


def write_test_scores(scores: Scores, out: Path) -> dict[str, Path]:
    """dice.csv (class, base_dice, cascade_dice; then mean and carpal_mean) and pose.csv (rows base, cascade),
    written as one folder that replaces the last run's whole."""
    with atomic_dir(out) as tmp:
        write_text(tmp / "dice.csv", table_csv(scores.table()))
        write_text(tmp / "pose.csv", table_csv(scores.pose_table()))
    return {"csv": out / "dice.csv", "pose": out / "pose.csv"}
