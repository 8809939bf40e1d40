"""The tables of benchmarks/strong_base.sh, rebuilt from whatever runs have finished under OUT:

    python benchmarks/strong_base_summary.py OUT      # writes OUT/summary.md and prints it

One row per stage 2 setting (prior x epochs), mean [min, max] over its seeds, of the test-set Dice by pose;
then each setting's gain over the base per carpal bone, the classes its validation plans pasted and any class
a seed lowered on the test set.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pandas as pd

CARPALS = ["Trapezium", "Trapezoid", "Capitate", "Hamate", "Scaphoid", "Lunate", "Triquetrum", "Pisiform"]
POSE = {"straight_mean": "straight mean", "bent_mean": "bent mean", "straight_carpal": "straight carpal",
        "bent_carpal": "bent carpal"}


def _run(report: Path) -> tuple[pd.Series, pd.Series]:
    dice = pd.read_csv(report / "dice.csv", index_col="class")["submission_dice"]
    pose = pd.read_csv(report / "pose.csv", index_col="method").loc["submission"]
    return dice, pose


def _cell(values: pd.Series, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    if len(values) == 1:
        return f.format(values.iloc[0])
    return f"{f.format(values.mean())} [{f.format(values.min())}, {f.format(values.max())}]"


def summary(out: Path) -> str:
    base_dice, base_pose = _run(out / "test" / "base")
    groups: dict[str, list[str]] = {}
    for report in sorted((out / "test").iterdir()):
        if report.name != "base" and (report / "dice.csv").is_file():
            groups.setdefault(re.sub(r"_s\d+$", "", report.name), []).append(report.name)

    head = ["setting", "seeds", "mean", "carpal", *POSE.values()]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|",
             "| base | - | " + " | ".join(f"{v:.3f}" for v in [base_dice["mean"], base_dice["carpal_mean"],
                                                              *(base_pose[k] for k in POSE)]) + " |"]
    gains = ["", "| setting | carpal gain | " + " | ".join(CARPALS) + " | pasted (of the seeds' plans) | lowered |",
             "|---" * (len(CARPALS) + 4) + "|"]
    for group, names in groups.items():
        runs = [_run(out / "test" / n) for n in names]
        dice = pd.DataFrame([d for d, _ in runs], index=names)
        pose = pd.DataFrame([p for _, p in runs], index=names)
        lines.append(f"| {group} | {len(names)} | {_cell(dice['mean'])} | {_cell(dice['carpal_mean'])} | "
                     + " | ".join(_cell(pose[k]) for k in POSE) + " |")
        delta = dice.sub(base_dice, axis=1)
        pasted: dict[str, int] = {}
        for n in names:
            plan = out / "val" / n / "paste.json"
            for c in json.loads(plan.read_text())["paste_classes"] if plan.is_file() else []:
                pasted[c] = pasted.get(c, 0) + 1
        lowered = sorted({c for n in names for c in delta.columns
                          if c not in ("mean", "carpal_mean") and delta.loc[n, c] < -1e-9})
        gains.append(f"| {group} | {_cell(delta['carpal_mean'], True)} | "
                     + " | ".join(f"{delta[c].mean():+.3f}" for c in CARPALS) + " | "
                     + (", ".join(f"{c} {k}/{len(names)}" for c, k in pasted.items()) or "none") + " | "
                     + (", ".join(lowered) or "none") + " |")
    return "\n".join(lines + gains) + "\n"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the OUT folder of strong_base.sh (test/, val/ inside)")
    out = parser.parse_args().out
    text = summary(out)
    (out / "summary.md").write_text(text)
    print(text, end="")
