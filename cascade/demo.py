"""`cascade demo`: the tool end to end on generated data, every output kept in one folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from convert.check import check_dataset
from configs import CONFIG_DIR, load_config
from plumbing.errors import CascadeError, DataError
from convert.folds import FOLDS_FILE
from convert.wrist_pose import TEST_BENT_SHARE
from convert.submission import list_images
from synthetic_hands import MAX_SIZE, MIN_SIZE, generate, load_synth_config
from convert.yolo import convert_to_yolo
from plumbing.values import check_range


@dataclass
class DemoConfig:
    patients: int = 24
    test_patients: int = 3
    size: int = 512
    seed: int = 0
    folds: int = 4
    fold: int = 0
    stage1_imgsz: int = 256
    stage1_config: str = "stage1_cpu.yaml"
    stage1_overrides: list[str] = field(default_factory=list)
    stage2_config: str = "stage2_cpu.yaml"
    stage2_overrides: list[str] = field(default_factory=list)
    fullhand_config: str = "fullhand_cpu.yaml"   # the baseline full-hand model the cascade is also pasted over
    fullhand_overrides: list[str] = field(default_factory=list)
    device: str | None = None
    overlays: int = 3

    def __post_init__(self):
        # ValueError: configs.build names the config file; checked before any work starts
        for key, low in (("patients", 1), ("test_patients", 1), ("seed", 0), ("folds", 2), ("stage1_imgsz", 32),
                         ("overlays", 0)):
            check_range(key, getattr(self, key), low)
        check_range("size", self.size, MIN_SIZE, MAX_SIZE, why="what synth generates")
        check_range("fold", self.fold, 0, self.folds, hi_open=True, why="folds")
        # every fold needs a patient, or a split comes out empty
        check_range("folds", self.folds, 2, self.patients, why="patients")


DEMO_MARKER = ".cascade-demo"  # marks a folder the demo may replace on its next run


def load_demo_config(path=None, overrides=()) -> DemoConfig:
    return load_config(DemoConfig, path or CONFIG_DIR / "demo.yaml", overrides)


def run_demo(out: str | Path, cfg: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """synth -> check -> convert -> train stage 1, stage 2 and a full-hand baseline -> the baseline's
    submissions -> evaluate both cascades (over stage 1, over the baseline) on held-out patients -> predict the
    test images over the baseline -> validate the submission -> overlays."""
    from stage1_detect.config import load_stage1_config
    from stage1_detect.train import check_settings as check_stage1
    from stage1_detect.train import train_stage1
    from stage2_segment.config import load_stage2_config
    from stage2_segment.train import check_settings as check_stage2
    from stage2_segment.train import train_stage2

    from .evaluate import evaluate_cascade, held_out
    from .fullhand import predict_whole_images
    from .pipeline import Cascade
    from .predict import predict_folder
    from .report import write_report
    from .visualize import visualize_image

    out = Path(out).resolve()
    device = cfg.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    steps = 10

    def step(k: int, text: str) -> None:
        echo(f"[{k}/{steps}] {text}  ({time.perf_counter() - started:.0f} s)")

    # Every config loaded (and so checked) first: a mistake fails in a second, not after training.
    data = out / "data"
    folds_file = out / "yolo" / FOLDS_FILE  # written by convert_to_yolo below
    s1_cfg = load_stage1_config(CONFIG_DIR / cfg.stage1_config, [
        f"imgsz={cfg.stage1_imgsz}", f"project={out / 'runs' / 'stage1'}", "name=demo",
        f"device={'cpu' if device == 'cpu' else device.split(':')[-1]}", *cfg.stage1_overrides])
    s2_cfg = load_stage2_config(CONFIG_DIR / cfg.stage2_config, [  # new data each run: stage 2 starts over too
        f"folds_file={folds_file}", f"fold={cfg.fold}", f"out={out / 'runs' / 'stage2'}", "name=demo",
        f"device={device}", "resume=false", *cfg.stage2_overrides])
    base_cfg = load_stage2_config(CONFIG_DIR / cfg.fullhand_config, [
        f"folds_file={folds_file}", f"fold={cfg.fold}", f"out={out / 'runs' / 'fullhand'}", "name=demo",
        f"device={device}", "resume=false", *cfg.fullhand_overrides])
    synth_cfg = load_synth_config()
    check_stage1(s1_cfg)
    check_stage2(s2_cfg)
    check_stage2(base_cfg)
    # the demo replaces what it wrote before, and nothing else: a folder it did not make is refused
    marker = out / DEMO_MARKER
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not marker.is_file():
        raise DataError(out, "exists and was not written by `cascade demo`; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `cascade demo`; a rerun replaces this folder's contents\n")

    generate(data, cfg.patients, cfg.test_patients, size=cfg.size, seed=cfg.seed, cfg=synth_cfg, overwrite=True)
    step(1, f"generated {2 * cfg.patients} labelled + {2 * cfg.test_patients} test images in {data}")

    report = check_dataset(data / "train")
    if not report.ok:
        raise CascadeError(f"generated data failed its check: {report.problems[0]}")
    step(2, f"dataset check: {report.images} images, {report.patients} patients, no problems")

    yolo = convert_to_yolo(data / "train", out / "yolo", folds=cfg.folds, fold=cfg.fold, imgsz=cfg.stage1_imgsz,
                           overwrite=True)
    step(3, f"YOLO-seg set: {yolo.counts['train']} train / {yolo.counts['val']} held-out images in {yolo.out}")

    stage1 = train_stage1(yolo.out, s1_cfg).best
    step(4, f"stage 1 trained: {stage1}")

    stage2 = train_stage2(data / "train", s2_cfg).best
    step(5, f"stage 2 trained: {stage2}")

    fullhand = train_stage2(data / "train", base_cfg).last  # the last epoch: no choice made on the held-out fold
    step(6, f"full-hand baseline trained (the stage 2 trainer on whole images): {fullhand}")

    # the baseline's predictions, as a team's own full-hand model would hand them over: submission files
    held = held_out(data / "train", folds_file, cfg.fold)
    base_held = predict_whole_images(fullhand, [i.image for i in held], out / "base" / "heldout.csv", device)
    test_images = data / "test" / "DCM"
    base_test = predict_whole_images(fullhand, list_images(test_images), out / "base" / "test.csv", device)
    step(7, f"baseline submissions: {base_held} (held-out fold), {base_test} (test images)")

    over_stage1, _ = evaluate_cascade(data / "train", folds_file, cfg.fold, stage1, stage2, device=device)
    over_base, plan = evaluate_cascade(data / "train", folds_file, cfg.fold, None, stage2, device=device,
                                       base=base_held)
    scores = side_by_side(over_stage1, over_base)
    paths = write_report(scores, out / "evaluation", plan, title="Demo: held-out patients")
    table = scores.table()
    figures = "; ".join(f"{column.removesuffix('_dice').replace('_', ' ')} mean {table.loc['mean', column]:.3f}, "
                        f"carpal {table.loc['carpal_mean', column]:.3f}" for column in table.columns)
    poses = scores.pose_table()
    mix = "; ".join(f"{method.replace('_', ' ')} mean {row['test_mix_mean']:.3f}, carpal {row['test_mix_carpal']:.3f}"
                    for method, row in poses.iterrows())
    step(8, f"held-out Dice (native resolution): {figures}; weighed to the test set's {TEST_BENT_SHARE:.0%} bent "
            f"wrists: {mix} -> {paths['markdown']}")

    submission = out / "submission.csv"
    summary = predict_folder(test_images, submission, None, stage2, device=device, paste_file=paths.get("paste"),
                             base=base_test)
    # predict_folder has checked the file as validate-submission does, against each image's decoded size
    step(9, f"submission for the test images (stage 2 over the baseline, the classes it proved), valid: "
            f"{summary.describe()}")

    overlays = []
    model = Cascade(stage1, stage2, device=device)  # loaded once for all overlays
    for item in held[:cfg.overlays]:
        overlays += visualize_image(item.image, out / "overlays" / f"{item.image.stem}.png", labels=item.label,
                                    model=model)
    step(10, f"{len(overlays)} overlay pictures (prediction in colour, truth in white, region in yellow) in {out / 'overlays'}")
    return {"data": data, "stage1": stage1, "stage2": stage2, "fullhand": fullhand, "report": paths["markdown"],
            "chart": paths["chart"], "submission": submission, "overlays": out / "overlays"}


def side_by_side(over_stage1, over_base):
    """One table of both evaluations of the same held-out images: stage 1 and the cascade over it, then the
    base and the cascade over it (its columns renamed `cascade_over_base...`). The region hit rate is stage 1's."""
    if over_stage1.images != over_base.images:
        raise CascadeError("the two evaluations scored different images")
    renamed = {("base" if m == "base" else m.replace("cascade", "cascade_over_base", 1)): v
               for m, v in over_base.dice.items()}
    return replace(over_stage1, dice={**over_stage1.dice, **renamed})
