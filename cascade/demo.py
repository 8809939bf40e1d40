"""`cascade demo`: the tool end to end on generated data, every output kept in one folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from configs import CONFIG_DIR, load_config
from convert.check import check_dataset
from convert.folds import FOLDS_FILE
from convert.submission import list_images
from convert.wrist_pose import TEST_BENT_SHARE, TRAIN_BENT_SHARE
from convert.yolo import convert_to_yolo
from plumbing.errors import CascadeError, DataError
from plumbing.values import check_range
from synthetic_hands import MAX_SIZE, MIN_SIZE, TEST_LABEL_DIR, SynthConfig, generate, load_synth_config

if TYPE_CHECKING:
    from stage1_detect.config import Stage1Config
    from stage2_segment.config import Stage2Config


@dataclass
class DemoConfig:
    patients: int = 24
    test_patients: int = 8
    bent_share: float | None = TRAIN_BENT_SHARE  # of the training images, as in the real set (None: each draws)
    test_bent_share: float = TEST_BENT_SHARE  # of the test images, as in the real test set
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
    synth_overrides: list[str] = field(default_factory=list)  # the generated films' mix (configs/synth.yaml)
    device: str | None = None
    overlays: int = 3

    def __post_init__(self):
        # ValueError: configs.build names the config file; checked before any work starts
        for key, low in (("patients", 1), ("test_patients", 1), ("seed", 0), ("folds", 2), ("stage1_imgsz", 32),
                         ("overlays", 0)):
            check_range(key, getattr(self, key), low)
        check_range("size", self.size, MIN_SIZE, MAX_SIZE, why="what synth generates")
        if self.bent_share is not None:
            check_range("bent_share", self.bent_share, 0, 1)
        check_range("test_bent_share", self.test_bent_share, 0, 1)
        check_range("fold", self.fold, 0, self.folds, hi_open=True, why="folds")
        # every fold needs a patient, or a split comes out empty
        check_range("folds", self.folds, 2, self.patients, why="patients")


DEMO_MARKER = ".cascade-demo"  # marks a folder the demo may replace on its next run
DEMO_STEPS = 11  # the numbered lines run_demo prints, one a step


def load_demo_config(path=None, overrides=()) -> DemoConfig:
    return load_config(DemoConfig, path or CONFIG_DIR / "demo.yaml", overrides)


def run_demo(out: str | Path, cfg: DemoConfig, echo: Callable[[str], None] = print) -> dict[str, Path]:
    """synth -> check -> convert -> train stage 1, stage 2 and a full-hand baseline -> the baseline's
    submissions -> evaluate both cascades (over stage 1, over the baseline) on held-out patients -> predict the
    test images over the baseline -> validate the submission -> score it and the baseline's on the test labels
    (which no earlier step reads) -> overlays."""
    demo = _start(Path(out).resolve(), cfg, echo)
    _generate_data(demo)
    _check_data(demo)
    yolo_set = _convert(demo)
    stage1 = _train_stage1(demo, yolo_set)
    stage2 = _train_stage2(demo)
    fullhand = _train_fullhand(demo)
    held, base_held, base_test = _baseline_submissions(demo, fullhand)
    paths = _evaluate(demo, stage1, stage2, base_held)
    submission = _predict_test_images(demo, stage2, paths.get("paste"), base_test)
    test_scores = _score_test_set(demo, submission, base_test)
    _draw_overlays(demo, held, stage1, stage2)
    return {"data": demo.data, "stage1": stage1, "stage2": stage2, "fullhand": fullhand, "report": paths["markdown"],
            "chart": paths["chart"], "submission": submission, "test_scores": test_scores,
            "overlays": demo.overlays}


@dataclass
class _Demo:
    """What every step of one demo run reads: its folder, device and checked configs, and the step counter."""
    out: Path
    cfg: DemoConfig
    device: str
    folds_file: Path
    s1_cfg: Stage1Config
    s2_cfg: Stage2Config
    base_cfg: Stage2Config
    synth_cfg: SynthConfig
    echo: Callable[[str], None]
    started: float
    done: int = 0

    @property
    def data(self) -> Path:
        return self.out / "data"

    @property
    def test_images(self) -> Path:
        return self.data / "test" / "DCM"

    @property
    def test_labels(self) -> Path:
        return self.data / TEST_LABEL_DIR

    @property
    def overlays(self) -> Path:
        return self.out / "overlays"

    def step(self, text: str) -> None:
        """The next step's numbered line, with the seconds since the demo started."""
        self.done += 1
        self.echo(f"[{self.done}/{DEMO_STEPS}] {text}  ({time.perf_counter() - self.started:.0f} s)")


def _start(out: Path, cfg: DemoConfig, echo: Callable[[str], None]) -> _Demo:
    """Every config loaded (and so checked) first: a mistake fails in a second, not after training; then the
    folder is claimed."""
    from stage1_detect.config import load_stage1_config
    from stage1_detect.train import check_settings as check_stage1
    from stage2_segment.config import load_stage2_config
    from stage2_segment.train import check_settings as check_stage2

    device = cfg.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    started = time.perf_counter()
    folds_file = out / "yolo" / FOLDS_FILE  # written by convert_to_yolo in _convert
    s1_cfg = load_stage1_config(CONFIG_DIR / cfg.stage1_config, [
        f"imgsz={cfg.stage1_imgsz}", f"project={out / 'runs' / 'stage1'}", "name=demo",
        f"device={'cpu' if device == 'cpu' else device.split(':')[-1]}", *cfg.stage1_overrides])
    s2_cfg = load_stage2_config(CONFIG_DIR / cfg.stage2_config, [  # new data each run: stage 2 starts over too
        f"folds_file={folds_file}", f"fold={cfg.fold}", f"out={out / 'runs' / 'stage2'}", "name=demo",
        f"device={device}", "resume=false", *cfg.stage2_overrides])
    base_cfg = load_stage2_config(CONFIG_DIR / cfg.fullhand_config, [
        f"folds_file={folds_file}", f"fold={cfg.fold}", f"out={out / 'runs' / 'fullhand'}", "name=demo",
        f"device={device}", "resume=false", *cfg.fullhand_overrides])
    synth_cfg = load_synth_config(None, cfg.synth_overrides)
    check_stage1(s1_cfg)
    check_stage2(s2_cfg)
    check_stage2(base_cfg)
    _claim_folder(out)
    return _Demo(out, cfg, device, folds_file, s1_cfg, s2_cfg, base_cfg, synth_cfg, echo, started)


def _claim_folder(out: Path) -> None:
    """The demo replaces what it wrote before, and nothing else: a folder it did not make is refused."""
    marker = out / DEMO_MARKER
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not marker.is_file():
        raise DataError(out, "exists and was not written by `cascade demo`; choose a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    marker.write_text("written by `cascade demo`; a rerun replaces this folder's contents\n")


def _generate_data(demo: _Demo) -> None:
    cfg = demo.cfg
    generate(demo.data, cfg.patients, cfg.test_patients, size=cfg.size, seed=cfg.seed, cfg=demo.synth_cfg,
             overwrite=True, bent_share=cfg.bent_share, test_bent_share=cfg.test_bent_share, test_labels=True)
    share = "each drawn" if cfg.bent_share is None else f"{cfg.bent_share:.0%}"
    demo.step(f"generated {2 * cfg.patients} labelled images (bent wrists: {share}) + "
              f"{2 * cfg.test_patients} test images ({cfg.test_bent_share:.0%} bent; their labels apart in "
              f"{demo.test_labels}, read only to score the final submission) in {demo.data}")


def _check_data(demo: _Demo) -> None:
    report = check_dataset(demo.data / "train")
    if not report.ok:
        raise CascadeError(f"generated data failed its check: {report.problems[0]}")
    demo.step(f"dataset check: {report.images} images, {report.patients} patients, no problems")


def _convert(demo: _Demo) -> Path:
    """The YOLO-seg set stage 1 trains on, and the folds file every later step splits by."""
    cfg = demo.cfg
    # the region class follows stage 1's own rule: its detections are then the boxes its fallback would give
    yolo = convert_to_yolo(demo.data / "train", demo.out / "yolo", folds=cfg.folds, fold=cfg.fold,
                           imgsz=cfg.stage1_imgsz, overwrite=True, region=demo.s1_cfg.region)
    demo.step(f"YOLO-seg set: {yolo.counts['train']} train / {yolo.counts['val']} held-out images in {yolo.out}")
    return yolo.out


def _train_stage1(demo: _Demo, yolo_set: Path) -> Path:
    from stage1_detect.train import train_stage1

    stage1 = train_stage1(yolo_set, demo.s1_cfg).best
    demo.step(f"stage 1 trained: {stage1}")
    return stage1


def _train_stage2(demo: _Demo) -> Path:
    from stage2_segment.train import train_stage2

    stage2 = train_stage2(demo.data / "train", demo.s2_cfg).best
    demo.step(f"stage 2 trained: {stage2}")
    return stage2


def _train_fullhand(demo: _Demo) -> Path:
    from stage2_segment.train import train_stage2

    # the last epoch: no choice made on the held-out fold
    fullhand = train_stage2(demo.data / "train", demo.base_cfg).last
    demo.step(f"full-hand baseline trained (the stage 2 trainer on whole images): {fullhand}")
    return fullhand


def _baseline_submissions(demo: _Demo, fullhand: Path) -> tuple[list, Path, Path]:
    """The baseline's predictions, as a team's own full-hand model would hand them over: submission files for
    the held-out fold and the test images. Returns the held-out items too."""
    from .evaluate import held_out
    from .fullhand import predict_whole_images

    held = held_out(demo.data / "train", demo.folds_file, demo.cfg.fold)
    base = demo.out / "base"
    base_held = predict_whole_images(fullhand, [i.image for i in held], base / "heldout.csv", demo.device)
    base_test = predict_whole_images(fullhand, list_images(demo.test_images), base / "test.csv", demo.device)
    demo.step(f"baseline submissions: {base_held} (held-out fold), {base_test} (test images)")
    return held, base_held, base_test


def _evaluate(demo: _Demo, stage1: Path, stage2: Path, base_held: Path) -> dict[str, Path]:
    """Both cascades (over stage 1, over the baseline) on the held-out patients; the report's paths."""
    from .evaluate import Evaluation, evaluate_cascade
    from .scores import join_over_base

    data, fold = demo.data / "train", demo.cfg.fold
    over_stage1, _ = evaluate_cascade(data, demo.folds_file, fold, stage1, stage2, device=demo.device)
    over_base, plan = evaluate_cascade(data, demo.folds_file, fold, None, stage2, device=demo.device,
                                       base=base_held)
    scores = join_over_base(over_stage1, over_base)
    paths = Evaluation(scores, plan, TEST_BENT_SHARE).save(demo.out / "evaluation", title="Demo: held-out patients")
    demo.step(f"held-out Dice (native resolution): {_held_out_figures(scores)} -> {paths['markdown']}")
    return paths


def _held_out_figures(scores) -> str:
    """Each method's mean and carpal Dice, then the same weighed to the test set's share of bent wrists."""
    table = scores.table()
    figures = "; ".join(f"{column.removesuffix('_dice').replace('_', ' ')} mean {table.loc['mean', column]:.3f}, "
                        f"carpal {table.loc['carpal_mean', column]:.3f}" for column in table.columns)
    poses = scores.pose_table()
    mix = "; ".join(f"{method.replace('_', ' ')} mean {row['test_mix_mean']:.3f}, carpal {row['test_mix_carpal']:.3f}"
                    for method, row in poses.iterrows())
    return f"{figures}; weighed to the test set's {TEST_BENT_SHARE:.0%} bent wrists: {mix}"


def _predict_test_images(demo: _Demo, stage2: Path, paste: Path | None, base_test: Path) -> Path:
    from .predict import predict_folder

    submission = demo.out / "submission.csv"
    summary = predict_folder(demo.test_images, submission, None, stage2, device=demo.device, paste_file=paste,
                             base=base_test)
    # predict_folder has checked the file as validate-submission does, against each image's decoded size
    demo.step(f"submission for the test images (stage 2 over the baseline, the classes it proved), valid: "
              f"{summary.describe()}")
    return submission


def _score_test_set(demo: _Demo, submission: Path, base_test: Path) -> Path:
    """The demo's headline: the baseline's and the cascade's test submissions scored on the test labels, which no
    model and no paste choice saw, on a test set shifted to the real one's share of bent wrists."""
    from .evaluate import score_submissions
    from .report import write_test_scores

    scores = score_submissions({"base": base_test, "cascade": submission}, demo.test_images.parent,
                               labels=demo.test_labels)
    out = demo.out / "test_scores"
    paths = write_test_scores(scores, out)
    table, poses = scores.table(), scores.pose_table()
    n_bent = sum(scores.bent)
    figures = "; ".join(f"{m} mean {table.loc['mean', f'{m}_dice']:.3f}, carpal {table.loc['carpal_mean', f'{m}_dice']:.3f}"
                        f" (bent {poses.loc[m, 'bent_carpal']:.3f})" for m in ("base", "cascade"))
    demo.step(f"test-set Dice ({len(scores.images)} images, {n_bent} bent wrists): {figures} -> {paths['csv']}")
    return out


def _draw_overlays(demo: _Demo, held: list, stage1: Path, stage2: Path) -> None:
    from .pipeline import Cascade
    from .visualize import visualize_image

    overlays = []
    model = Cascade(stage1, stage2, device=demo.device)  # loaded once for all overlays
    for item in held[:demo.cfg.overlays]:
        overlays += visualize_image(item.image, demo.overlays / f"{item.image.stem}.png", labels=item.label,
                                    model=model)
    demo.step(f"{len(overlays)} overlay pictures (prediction in colour, truth in white, region in yellow) in "
              f"{demo.overlays}")
