"""`cascade demo`: the tool end to end on generated data, every output kept in one folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import torch

from configs import CONFIG_DIR, load_config, parse_overrides
from convert.check import check_dataset
from convert.folds import FOLDS_FILE
from convert.images import list_images
from convert.wrist_pose import TEST_BENT_SHARE, TRAIN_BENT_SHARE
from convert.yolo import convert_to_yolo
from plumbing.errors import CascadeError, DataError
from plumbing.values import check_range
from synthetic_hands import MAX_SIZE, MIN_SIZE, TEST_LABEL_DIR, generate, load_synth_config

from .report import write_test_scores
from .scores import join_over_base


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
    return Demo(Path(out).resolve(), cfg, echo).run()


class Demo:
    """One demo run: its folder, device and checked configs; each step a method, in the order they run."""

    def __init__(self, out: Path, cfg: DemoConfig, echo: Callable[[str], None]):
        """Every config loaded (and so checked) first: a mistake fails in a second, not after training."""
        from stage1_detect.train import check_settings as check_stage1
        from stage2_segment.train import check_settings as check_stage2

        self.out, self.cfg, self.echo = out, cfg, echo
        self.device = cfg.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        self.started, self.done = time.perf_counter(), 0
        self.folds_file = out / "yolo" / FOLDS_FILE  # written by convert_to_yolo in convert()
        self.s1_cfg = self._stage1_config()
        # new data each run: stage 2 and the baseline start over too
        self.s2_cfg = self._stage2_config(cfg.stage2_config, cfg.stage2_overrides, "stage2")
        self.base_cfg = self._stage2_config(cfg.fullhand_config, cfg.fullhand_overrides, "fullhand")
        self.synth_cfg = load_synth_config(None, cfg.synth_overrides)
        check_stage1(self.s1_cfg)
        check_stage2(self.s2_cfg)
        check_stage2(self.base_cfg)

    def run(self) -> dict[str, Path]:
        self.claim_folder()
        self.generate_data()
        self.check_data()
        yolo_set = self.convert()
        stage1 = self.train_stage1(yolo_set)
        stage2 = self.train_stage2()
        fullhand = self.train_fullhand()
        held, base_held, base_test = self.baseline_submissions(fullhand)
        report = self.evaluate(stage1, stage2, base_held)
        submission = self.predict_test_images(stage2, report.get("paste"), base_test)
        test_scores = self.score_test_set(submission, base_test)
        self.draw_overlays(held, stage1, stage2)
        return {"data": self.data, "stage1": stage1, "stage2": stage2, "fullhand": fullhand,
                "report": report["markdown"], "chart": report["chart"], "submission": submission,
                "test_scores": test_scores, "overlays": self.overlays}

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

    def _stage1_config(self):
        """The stage 1 config file with the user's overrides, then the demo's folder, image size and device
        wherever the user's overrides leave them."""
        from stage1_detect.config import load_stage1_config

        cfg = load_stage1_config(CONFIG_DIR / self.cfg.stage1_config, self.cfg.stage1_overrides)
        index = "cpu" if self.device == "cpu" else self.device.split(":")[-1]
        ours = {"imgsz": self.cfg.stage1_imgsz, "project": str(self.out / "runs" / "stage1"), "name": "demo",
                "device": int(index) if index.isdecimal() else index}  # ultralytics takes a GPU by its index
        theirs = {key.removeprefix("ultralytics.") for key in parse_overrides(self.cfg.stage1_overrides)}
        if "ultralytics" in theirs:  # the user's whole `ultralytics` mapping
            return cfg
        return replace(cfg, ultralytics={**cfg.ultralytics, **_unless_given(ours, theirs)})

    def _stage2_config(self, file: str, overrides: list[str], run: str):
        """A stage 2 config file with the user's overrides, then the demo's split, folder and device wherever
        the user's overrides leave them; never resumed."""
        from stage2_segment.config import load_stage2_config

        cfg = load_stage2_config(CONFIG_DIR / file, overrides)
        ours = {"folds_file": str(self.folds_file), "fold": self.cfg.fold, "out": str(self.out / "runs" / run),
                "name": "demo", "device": self.device, "resume": False}
        return replace(cfg, **_unless_given(ours, {key.split(".")[0] for key in parse_overrides(overrides)}))

    def claim_folder(self) -> None:
        """The demo replaces what it wrote before, and nothing else: a folder it did not make is refused."""
        marker = self.out / DEMO_MARKER
        if self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())) and not marker.is_file():
            raise DataError(self.out, "exists and was not written by `cascade demo`; choose a new or empty folder")
        self.out.mkdir(parents=True, exist_ok=True)
        marker.write_text("written by `cascade demo`; a rerun replaces this folder's contents\n")

    def generate_data(self) -> None:
        cfg = self.cfg
        generate(self.data, cfg.patients, cfg.test_patients, size=cfg.size, seed=cfg.seed, cfg=self.synth_cfg,
                 overwrite=True, bent_share=cfg.bent_share, test_bent_share=cfg.test_bent_share, test_labels=True)
        share = "each drawn" if cfg.bent_share is None else f"{cfg.bent_share:.0%}"
        self.step(f"generated {2 * cfg.patients} labelled images (bent wrists: {share}) + "
                  f"{2 * cfg.test_patients} test images ({cfg.test_bent_share:.0%} bent; their labels apart in "
                  f"{self.test_labels}, read only to score the final submission) in {self.data}")

    def check_data(self) -> None:
        report = check_dataset(self.data / "train")
        if not report.ok:
            raise CascadeError(f"generated data failed its check: {report.problems[0]}")
        self.step(f"dataset check: {report.images} images, {report.patients} patients, no problems")

    def convert(self) -> Path:
        """The YOLO-seg set stage 1 trains on, and the folds file every later step splits by."""
        # the region class follows stage 1's own rule: its detections are then the boxes its fallback would give
        yolo = convert_to_yolo(self.data / "train", self.out / "yolo", folds=self.cfg.folds, fold=self.cfg.fold,
                               imgsz=self.cfg.stage1_imgsz, overwrite=True, region=self.s1_cfg.region)
        self.step(f"YOLO-seg set: {yolo.counts['train']} train / {yolo.counts['val']} held-out images in {yolo.out}")
        return yolo.out

    def train_stage1(self, yolo_set: Path) -> Path:
        from stage1_detect.train import train_stage1

        stage1 = train_stage1(yolo_set, self.s1_cfg).best
        self.step(f"stage 1 trained: {stage1}")
        return stage1

    def train_stage2(self) -> Path:
        from stage2_segment.train import train_stage2

        stage2 = train_stage2(self.data / "train", self.s2_cfg).best
        self.step(f"stage 2 trained: {stage2}")
        return stage2

    def train_fullhand(self) -> Path:
        from stage2_segment.train import train_stage2

        # the last epoch: no choice made on the held-out fold
        fullhand = train_stage2(self.data / "train", self.base_cfg).last
        self.step(f"full-hand baseline trained (the stage 2 trainer on whole images): {fullhand}")
        return fullhand

    def baseline_submissions(self, fullhand: Path) -> tuple[list, Path, Path]:
        """The baseline's predictions, as a team's own full-hand model would hand them over: submission files
        for the held-out fold and the test images. Returns the held-out items too."""
        from .evaluate import held_out
        from .fullhand import predict_whole_images

        held = held_out(self.data / "train", self.folds_file, self.cfg.fold)
        base = self.out / "base"
        base_held = predict_whole_images(fullhand, [i.image for i in held], base / "heldout.csv", self.device)
        base_test = predict_whole_images(fullhand, list_images(self.test_images), base / "test.csv", self.device)
        self.step(f"baseline submissions: {base_held} (held-out fold), {base_test} (test images)")
        return held, base_held, base_test

    def evaluate(self, stage1: Path, stage2: Path, base_held: Path) -> dict[str, Path]:
        """Both cascades (over stage 1, over the baseline) on the held-out patients, saved as `cascade evaluate`
        saves its report; the report's paths."""
        from .evaluate import Evaluation, evaluate_cascade

        data, fold = self.data / "train", self.cfg.fold
        over_stage1, _ = evaluate_cascade(data, self.folds_file, fold, stage1, stage2, device=self.device)
        over_base, plan = evaluate_cascade(data, self.folds_file, fold, None, stage2, device=self.device,
                                           base=base_held)
        scores = join_over_base(over_stage1, over_base)
        paths = Evaluation(scores, plan, TEST_BENT_SHARE).save(self.out / "evaluation",
                                                               title="Demo: held-out patients")
        self.step(f"held-out Dice (native resolution): {_held_out_figures(scores)} -> {paths['markdown']}")
        return paths

    def predict_test_images(self, stage2: Path, paste: Path | None, base_test: Path) -> Path:
        from .predict import predict_folder

        submission = self.out / "submission.csv"
        summary = predict_folder(self.test_images, submission, None, stage2, device=self.device, paste_file=paste,
                                 base=base_test)
        # predict_folder has checked the file as validate-submission does, against each image's decoded size
        self.step(f"submission for the test images (stage 2 over the baseline, the classes it proved), valid: "
                  f"{summary.describe()}")
        return submission

    def score_test_set(self, submission: Path, base_test: Path) -> Path:
        """The demo's headline: the baseline's and the cascade's test submissions scored on the test labels,
        which no model and no paste choice saw, on a test set shifted to the real one's share of bent wrists."""
        from .evaluate import score_submissions

        scores = score_submissions({"base": base_test, "cascade": submission}, self.test_images.parent,
                                   labels=self.test_labels)
        out = self.out / "test_scores"
        paths = write_test_scores(scores, out)
        self.step(f"test-set Dice ({len(scores.images)} images, {sum(scores.bent)} bent wrists): "
                  f"{_test_figures(scores)} -> {paths['csv']}")
        return out

    def draw_overlays(self, held: list, stage1: Path, stage2: Path) -> None:
        from .pipeline import Cascade
        from .visualize import visualize_image

        overlays = []
        model = Cascade(stage1, stage2, device=self.device)  # loaded once for all overlays
        for item in held[:self.cfg.overlays]:
            overlays += visualize_image(item.image, self.overlays / f"{item.image.stem}.png", labels=item.label,
                                        model=model)
        self.step(f"{len(overlays)} overlay pictures (prediction in colour, truth in white, region in yellow) in "
                  f"{self.overlays}")


def _unless_given(ours: dict, theirs: set) -> dict:
    """The demo's own settings that the user's overrides do not set: theirs win, as if applied after ours."""
    return {key: value for key, value in ours.items() if key not in theirs}


def _held_out_figures(scores) -> str:
    """Each method's mean and carpal Dice, then the same weighed to the test set's share of bent wrists."""
    table = scores.table()
    figures = "; ".join(f"{column.removesuffix('_dice').replace('_', ' ')} mean {table.loc['mean', column]:.3f}, "
                        f"carpal {table.loc['carpal_mean', column]:.3f}" for column in table.columns)
    poses = scores.pose_table()
    mix = "; ".join(f"{method.replace('_', ' ')} mean {row['test_mix_mean']:.3f}, carpal {row['test_mix_carpal']:.3f}"
                    for method, row in poses.iterrows())
    return f"{figures}; weighed to the test set's {TEST_BENT_SHARE:.0%} bent wrists: {mix}"


def _test_figures(scores) -> str:
    """The baseline's and the cascade's mean and carpal Dice, and their carpal Dice on bent wrists."""
    table, poses = scores.table(), scores.pose_table()
    return "; ".join(f"{m} mean {table.loc['mean', f'{m}_dice']:.3f}, "
                     f"carpal {table.loc['carpal_mean', f'{m}_dice']:.3f} (bent {poses.loc[m, 'bent_carpal']:.3f})"
                     for m in ("base", "cascade"))
