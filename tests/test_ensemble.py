"""Several models of a stage as one: stage 1 votes per pixel, stage 2 averages probabilities."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.ensemble import Stage1Vote, Stage2Mean
from convert.carpal_region import Region, RegionConfig, carpal_region
from convert.classes import NUM_CLASSES
from plumbing.errors import CascadeError
from stage1_detect.predict import Stage1Output


class FakeStage1:
    def __init__(self, masks, scores):
        self.masks, self.scores, self.region_cfg = masks, scores, RegionConfig()

    def predict(self, images):
        return [Stage1Output(self.masks.copy(), self.scores.copy(), carpal_region(self.masks)) for _ in images]


def test_stage1_pixels_need_half_of_the_votes():
    rng = np.random.default_rng(0)
    members = [(rng.random((NUM_CLASSES, 40, 30)) < 0.5).astype(np.uint8) for _ in range(3)]
    scores = [np.full(NUM_CLASSES, s, np.float32) for s in (0.3, 0.6, 0.9)]
    voted = Stage1Vote([FakeStage1(m, s) for m, s in zip(members, scores)]).predict([None, None])
    majority = (sum(m.astype(int) for m in members) >= 2).astype(np.uint8)
    assert len(voted) == 2
    np.testing.assert_array_equal(voted[0].masks, majority)
    np.testing.assert_allclose(voted[0].scores, 0.6)
    assert voted[0].region == carpal_region(majority)
    # two models: a tie counts as foreground, so a pixel either model finds is kept
    pair = Stage1Vote([FakeStage1(m, s) for m, s in zip(members[:2], scores[:2])]).predict([None])[0]
    np.testing.assert_array_equal(pair.masks, members[0] | members[1])


def fake_stage2(value, classes=(19, 20), path="a.pt"):
    return SimpleNamespace(
        path=Path(path), train_classes=list(classes), paste_classes=[19], thresholds=np.array([0.5, 0.4]),
        region_cfg=RegionConfig(), largest_component=True, needs_prior=False,
        predict=lambda images, regions, tta_hflip=False, batch=8, channels=None, full=None: [
            np.full((2 if channels is None else len(channels), 3, 4), value, np.float32) for _ in images])


def test_stage2_probabilities_are_averaged_and_only_alike_checkpoints_mix():
    mean = Stage2Mean([fake_stage2(0.2), fake_stage2(0.8), fake_stage2(0.5)])
    probs = mean.predict([None], [None])
    assert len(probs) == 1 and probs[0].shape == (2, 3, 4)
    np.testing.assert_allclose(probs[0], 0.5)
    assert mean.predict([None], [None], channels=[1])[0].shape == (1, 3, 4)  # the channels asked for, passed on
    assert mean.train_classes == [19, 20] and mean.paste_classes == [19]
    with pytest.raises(CascadeError, match="b.pt"):
        Stage2Mean([fake_stage2(0.2), fake_stage2(0.8, classes=(19, 21), path="b.pt")])


def test_an_ensemble_of_one_model_twice_writes_the_same_submission(stage1_run, stage2_run, synth_root, tmp_path):
    images = synth_root / "test" / "DCM"
    common = ["predict", "--images", images, "--device", "cpu"]
    single = [*common, "--stage1", stage1_run.best, "--stage2", stage2_run.best, "--out", tmp_path / "one.csv"]
    double = [*common, "--stage1", stage1_run.best, "--stage1", stage1_run.best,
              "--stage2", stage2_run.best, "--stage2", stage2_run.best, "--out", tmp_path / "two.csv"]
    for args in (single, double):
        result = CliRunner().invoke(main, [str(a) for a in args])
        assert result.exit_code == 0, result.output
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()


class DetectingStage1(FakeStage1):
    """A member whose region is its detection (a fixed box) or, with box None, the rule's."""

    def __init__(self, masks, box):
        super().__init__(masks, np.zeros(NUM_CLASSES, np.float32))
        self.box = box

    def predict(self, images):
        region = Region(self.box, "detected") if self.box else carpal_region(self.masks, self.region_cfg)
        return [Stage1Output(self.masks.copy(), self.scores.copy(), region) for _ in images]


def test_the_vote_takes_the_mean_detected_region_when_half_the_members_detect_it():
    masks = np.zeros((NUM_CLASSES, 200, 200), np.uint8)
    two = Stage1Vote([DetectingStage1(masks, (40, 40, 100, 100)), DetectingStage1(masks, (60, 60, 120, 120)),
                      DetectingStage1(masks, None)]).predict([None])[0]
    assert two.region == Region((50, 50, 110, 110), "detected")
    one = Stage1Vote([DetectingStage1(masks, (40, 40, 100, 100)), DetectingStage1(masks, None),
                      DetectingStage1(masks, None)]).predict([None])[0]
    assert one.region == carpal_region(masks) and one.region.source == "prior"
    vote = Stage1Vote([DetectingStage1(masks, None), DetectingStage1(masks, None)])
    vote.region_cfg = RegionConfig(margin=0.3)  # the cascade gives stage 2's rule: every member finishes by it
    assert all(m.region_cfg.margin == 0.3 for m in vote.models)
