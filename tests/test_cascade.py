"""The cascade with both stages: predict, evaluate (and its paste plan), visualize and the demo, end to end."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.scores import Scores
from cascade.tuning import THRESHOLDS, threshold_curve, tune_thresholds
from cascade.paste import PastePlan, largest_component, paste
from cascade.pipeline import Cascade
from convert.carpal_region import Region
from convert.classes import CARPAL_INDICES, CLASSES
from convert.dataset import load_sample, scan
from convert import rle
from convert.dice import dice_per_class
from synthetic_hands import generate


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_cascade_pastes_only_inside_the_region_and_only_planned_classes(stage1_run, stage2_run, synth_root):
    model = Cascade(stage1_run.best, stage2_run.best, device="cpu")
    assert model.plan.classes == model.plan.largest == CARPAL_INDICES  # the checkpoint's default
    # the crop rule is stage 2's, the fallback prior stage 1's own
    assert model.stage1.region_cfg.margin == model.stage2.region_cfg.margin
    image = load_sample(scan(synth_root / "train").items[0]).image
    out = model.run([image])[0]
    before = out.full_masks.copy()
    x0, y0, x1, y1 = out.region.box
    # only the pasted classes' channels come back from the network, and they are the full output's
    assert out.prob_classes == CARPAL_INDICES and out.probs.shape == (len(CARPAL_INDICES), y1 - y0, x1 - x0)
    every = model.stage2.predict([image], [out.region])[0]
    picked = every[[model.stage2.train_classes.index(c) for c in CARPAL_INDICES]]
    np.testing.assert_allclose(out.probs, picked, atol=1e-6)  # resampling 8 channels or 29 rounds alike to 1e-7
    final = model.final_masks(out, copy=True)
    # the submission encodes each class from a box holding its pixels (stage 1's, grown by the region if pasted)
    boxes = model.final_boxes(out)
    assert boxes is not None and (boxes[list(CARPAL_INDICES)] != 0).any()
    for c in range(29):
        assert rle.encode(final[c], boxes[c]) == rle.encode_full(final[c])
    outside = np.ones(image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(final[:, outside], before[:, outside])
    others = [c for c in range(29) if c not in CARPAL_INDICES]
    np.testing.assert_array_equal(final[others], before[others])
    for c in CARPAL_INDICES:
        j = out.prob_classes.index(c)
        expected = largest_component(out.probs[j] >= model.plan.thresholds[c])  # the checkpoint's default
        np.testing.assert_array_equal(final[c, y0:y1, x0:x1], expected)


def test_region_at_the_border_and_a_non_square_image(stage1_run, stage2_run):
    model = Cascade(stage1_run.best, stage2_run.best, device="cpu")
    image = np.zeros((150, 260), np.uint8)
    probs = model.stage2.predict([image], [Region((200, 90, 260, 150), "prior")])[0]
    assert probs.shape == (len(model.stage2.train_classes), 60, 60)
    out = model.run([image])[0]  # nothing to find: a fallback region, never a crash
    assert out.region.source in ("neighbours", "prior")
    assert model.final_masks(out).shape == (29, 150, 260)


def test_evaluate_writes_both_columns_and_a_plan_that_predict_uses(stage1_run, stage2_run, synth_root, yolo_set,
                                                                    tmp_path):
    result = run("evaluate", "--data", synth_root / "train", "--folds-file", yolo_set / "folds.json", "--fold", 0,
                 "--stage1", stage1_run.best, "--stage2", stage2_run.best, "--out", tmp_path / "r", "--device", "cpu",
                 "--bent-share", "none")  # the plan then follows dice.csv's plain means (the mix: test_pose.py)
    assert result.exit_code == 0, result.output
    poses = pd.read_csv(tmp_path / "r" / "pose.csv", index_col="method")
    assert poses.index.tolist() == ["stage1", "cascade", "cascade_tuned"]
    assert poses["test_mix_mean"].isna().all()  # mixing is off
    df = pd.read_csv(tmp_path / "r" / "dice.csv")
    assert list(df.columns) == ["class", "stage1_dice", "cascade_dice", "cascade_tuned_dice"]
    assert df["class"].tolist() == list(CLASSES) + ["mean", "carpal_mean"]
    non_carpal = [i for i in range(29) if i not in CARPAL_INDICES]
    # stage 2 is pasted for the carpals only: every other class scores exactly as stage 1
    np.testing.assert_allclose(df.loc[non_carpal, "cascade_dice"], df.loc[non_carpal, "stage1_dice"])
    np.testing.assert_allclose(df.loc[non_carpal, "cascade_tuned_dice"], df.loc[non_carpal, "stage1_dice"])
    plan = json.loads((tmp_path / "r" / "paste.json").read_text())
    raised = [CLASSES[c] for c in CARPAL_INDICES if df.loc[c, "cascade_tuned_dice"] > df.loc[c, "stage1_dice"]]
    assert plan["paste_classes"] == raised
    assert set(plan["thresholds"]) == set(raised) and all(t in THRESHOLDS for t in plan["thresholds"].values())

    sub = tmp_path / "sub.csv"
    result = run("predict", "--stage1", stage1_run.best, "--stage2", stage2_run.best, "--images",
                 synth_root / "test" / "DCM", "--out", sub, "--paste-file", tmp_path / "r" / "paste.json",
                 "--tta", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert run("validate-submission", sub, "--images", synth_root / "test" / "DCM").exit_code == 0


def test_folds_pool_out_of_fold_into_one_report(stage1_run, stage2_run, synth_root, yolo_set, tmp_path):
    from cascade.evaluate import evaluate_cascade, evaluate_folds

    data, folds = synth_root / "train", yolo_set / "folds.json"
    single = [evaluate_cascade(data, folds, f, stage1_run.best, stage2_run.best, device="cpu")[0] for f in (0, 1)]
    pooled, plan = evaluate_folds(data, folds, [(0, stage1_run.best, stage2_run.best),
                                                (1, stage1_run.best, stage2_run.best)], device="cpu")
    assert pooled.images == single[0].images + single[1].images
    for method in ("stage1", "cascade"):
        np.testing.assert_array_equal(pooled.dice[method], single[0].dice[method] + single[1].dice[method])
    assert plan is not None and set(plan.classes) <= set(CARPAL_INDICES)

    base = ["evaluate", "--data", data, "--folds-file", folds, "--device", "cpu"]
    result = run(*base, "--out", tmp_path / "r", "--fold", 0, "--fold", 1,
                 "--stage1", stage1_run.best, "--stage1", stage1_run.best)
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(tmp_path / "r" / "dice.csv")) == len(CLASSES) + 2
    for bad, words in ((["--fold", 0, "--fold", 1, "--stage1", stage1_run.best], "2 --fold(s) need as many"),
                       (["--fold", 0, "--fold", 0, "--stage1", stage1_run.best, "--stage1", stage1_run.best],
                        "each --fold once: got 0, 0")):
        result = run(*base, "--out", tmp_path / "r2", *bad)
        assert result.exit_code == 2 and f"Error: {words}" in result.output and not (tmp_path / "r2").exists()


def test_evaluate_scores_an_ensemble_given_with_commas(stage1_run, stage2_run, synth_root, yolo_set, tmp_path):
    base = ["evaluate", "--data", synth_root / "train", "--folds-file", yolo_set / "folds.json", "--device", "cpu"]
    single = run(*base, "--out", tmp_path / "one", "--stage1", stage1_run.best, "--stage2", stage2_run.best)
    twice = run(*base, "--out", tmp_path / "two", "--stage1", f"{stage1_run.best},{stage1_run.best}",
                "--stage2", f"{stage2_run.best}, {stage2_run.best}")
    assert single.exit_code == 0 and twice.exit_code == 0, twice.output
    # one model twice is that model: a vote of identical masks, a mean of identical probabilities
    assert (tmp_path / "one" / "dice.csv").read_bytes() == (tmp_path / "two" / "dice.csv").read_bytes()
    missing = run(*base, "--out", tmp_path / "three", "--stage1", f"{stage1_run.best},{tmp_path / 'none.pt'}")
    assert missing.exit_code == 2 and "none.pt" in missing.output
    later = run(*base, "--out", tmp_path / "four", "--fold", 0, "--fold", 1, "--stage1", stage1_run.best,
                "--stage1", f"{stage1_run.best},{tmp_path / 'none.pt'}")  # fold 1's member, found before fold 0 runs
    assert later.exit_code == 2 and "none.pt: model file not found" in later.output
    assert "evaluating" not in later.output


def test_an_empty_plan_reproduces_stage1_only(stage1_run, stage2_run, synth_root, tmp_path):
    PastePlan((), {}).save(tmp_path / "none.json")
    common = ["--stage1", stage1_run.best, "--images", synth_root / "test" / "DCM", "--device", "cpu"]
    assert run("predict", *common, "--stage1-only", "--out", tmp_path / "a.csv").exit_code == 0
    assert run("predict", *common, "--stage2", stage2_run.best, "--paste-file", tmp_path / "none.json",
               "--out", tmp_path / "b.csv").exit_code == 0
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_visualize_with_both_stages_writes_the_comparison(stage1_run, stage2_run, synth_root, tmp_path):
    item = scan(synth_root / "train").items[0]
    result = run("visualize", "--image", item.image, "--labels", item.label, "--stage1", stage1_run.best,
                 "--stage2", stage2_run.best, "--out", tmp_path / "v.png", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v.png").exists() and (tmp_path / "v_compare.png").exists()


def test_demo_runs_end_to_end_on_a_tiny_config_and_again_into_the_same_folder(tmp_path, monkeypatch):
    import cascade.demo as demo

    # The test labels are unreadable from generation until the final scoring: a step before it that read them
    # (training, the paste choice) would fail.
    kept = {}

    def generate_and_hide(*args, **kwargs):
        summary = generate(*args, **kwargs)
        for path in Path(summary["test_labels"]).rglob("*.json"):
            kept[path] = path.read_bytes()
            path.write_text("{not json")
        return summary

    def restore_and_score(*args):
        assert kept
        for path, data in kept.items():
            path.write_bytes(data)
        return score(*args)

    score = demo.Demo.score_test_set
    monkeypatch.setattr(demo, "generate", generate_and_hide)
    monkeypatch.setattr(demo.Demo, "score_test_set", restore_and_score)
    tiny = ["demo", "--out", tmp_path / "demo", "patients=6", "test_patients=1", "size=192", "folds=3",
            "stage1_imgsz=128", "stage1_overrides=[epochs=1, batch=4, workers=0]",
            "stage2_overrides=[epochs=1, input_size=64, 'decoder_channels=[16,16,16,16,16]']",
            "fullhand_overrides=[epochs=1, input_size=64, 'decoder_channels=[16,16,16,16,16]']",
            "overlays=1", "device=cpu"]
    result = run(*tiny)
    assert result.exit_code == 0, result.output
    for name in ("submission.csv", "evaluation/dice.csv", "evaluation/dice.png", "evaluation/paste.json",
                 "base/heldout.csv", "base/test.csv"):
        assert (tmp_path / "demo" / name).exists(), name
    columns = pd.read_csv(tmp_path / "demo" / "evaluation" / "dice.csv").columns
    assert {"stage1_dice", "cascade_dice", "base_dice", "cascade_over_base_dice"} <= set(columns)
    assert "[11/11]" in result.output
    report = (tmp_path / "demo" / "evaluation" / "dice.md").read_text()
    assert "hit rate of stage 1's regions" in report and "hit rate of base's regions" in report
    test_dice = pd.read_csv(tmp_path / "demo" / "test_scores" / "dice.csv", index_col="class")
    assert list(test_dice.columns) == ["base_dice", "cascade_dice"]
    assert list(test_dice.index[-2:]) == ["mean", "carpal_mean"] and len(test_dice) == 31
    poses = pd.read_csv(tmp_path / "demo" / "test_scores" / "pose.csv", index_col="method")
    assert list(poses.index) == ["base", "cascade"]
    assert list(poses.columns) == list(pd.read_csv(tmp_path / "demo" / "evaluation" / "pose.csv").columns[1:])
    data = tmp_path / "demo" / "data"  # the headline is what `cascade evaluate --submission --labels` says
    check = run("evaluate", "--data", data / "test", "--labels", data / "test_labels", "--submission",
                tmp_path / "demo" / "submission.csv", "--out", tmp_path / "check")
    assert check.exit_code == 0, check.output
    assert np.allclose(pd.read_csv(tmp_path / "check" / "dice.csv")["submission_dice"], test_dice["cascade_dice"])
    first = (tmp_path / "demo" / "submission.csv").read_bytes()
    monkeypatch.undo()
    again = run(*tiny)  # `make demo` twice: everything is replaced, not refused or mixed
    assert again.exit_code == 0, again.output
    assert (tmp_path / "demo" / "submission.csv").read_bytes() == first


@pytest.mark.parametrize("largest", [False, True])
def test_threshold_curve_scores_exactly_what_paste_builds(largest):
    rng = np.random.default_rng(0)
    truth = np.zeros((1, 60, 80), np.uint8)
    truth[0, 20:45, 25:50] = 1
    first = np.zeros_like(truth)
    first[0, 15:40, 20:70] = 1  # stage 1 spills outside the region too
    region = Region((10, 10, 60, 50), "carpals")
    probs = np.clip(truth[0, 10:50, 10:60] * 0.6 + rng.random((40, 50)) * 0.5, 0, 1).astype(np.float32)
    curve = threshold_curve(first[0], probs, truth[0], region, largest=largest)
    for t, dice in zip(THRESHOLDS, curve):
        pasted = paste(first.copy(), probs[None], region, [0], PastePlan((0,), {0: t}, (0,) if largest else ()))
        assert dice == dice_per_class(pasted, truth)[0]
    assert len(set(curve.round(6))) > 3  # the threshold matters here
    empty = np.zeros_like(truth[0])
    assert (threshold_curve(empty, np.zeros((40, 50), np.float32), empty, region) == 1.0).all()


def test_tuned_thresholds_are_chosen_on_all_patients_but_scored_cross_fitted():
    scores = Scores()
    # patient A's images like the first threshold, patient B's the third; one class, three thresholds
    curves = {"A": np.array([0.9, 0.5, 0.1]), "B": np.array([0.2, 0.6, 0.8])}
    for name, patient in [("a1", "A"), ("a2", "A"), ("b1", "B")]:
        scores.patients.append(patient)
        scores.curves.setdefault(19, []).append(curves[patient])
    tuning = tune_thresholds(scores, settings=(0.3, 0.5, 0.7))
    assert tuning.chosen == {19: 0.3}  # mean over the 3 images: 0.667, 0.533, 0.333
    # A is scored at B's choice (0.7), B at A's (0.3): far below what each would pick for itself
    np.testing.assert_allclose(tuning.cross_fitted[19], [0.1, 0.1, 0.2])
    scores.patients[:] = ["A", "A", "A"]
    assert tune_thresholds(scores) is None  # one patient: nothing to cross-fit
