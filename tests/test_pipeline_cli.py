"""`cascade predict`, `evaluate` and `visualize` end to end on a tiny generated set (stage 1 alone here;
the stage 2 paths are in test_cascade.py)."""

import shutil
from pathlib import Path

import cv2
import pandas as pd
import pytest
from click.testing import CliRunner

from cascade.cli import main
from convert.classes import CLASSES
from convert.dataset import iter_samples, scan
from convert.masks import class_masks
from convert.submission import encode_masks, read_submission, write_submission
from synthetic_hands import generate

REAL = Path(__file__).parent / "data" / "fracatlas" / "IMG0002313.jpg"


def torch_names(weights):
    from stage1_detect.safe_load import safe_load

    return safe_load(weights)["model"].names


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture
def test_images(synth_root, tmp_path):
    """The generated test images plus a real JPEG radiograph of another size and a 16-bit PNG."""
    folder = tmp_path / "test"
    shutil.copytree(synth_root / "test" / "DCM", folder)
    shutil.copy(REAL, folder / REAL.name)
    first = sorted(folder.rglob("*.png"))[0]
    cv2.imwrite(str(folder / "wide16.png"), (cv2.imread(str(first), 0).astype("uint16") * 257)[:, :150])
    return folder


def test_predict_stage1_only_writes_a_valid_submission_for_every_image(stage1_run, test_images, tmp_path):
    out = tmp_path / "sub.csv"
    result = run("predict", "--stage1", stage1_run.best, "--stage1-only", "--images", test_images, "--out", out,
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert "6 images" in result.output and "s per image" in result.output
    assert "carpal regions detected " in result.output  # every region source is counted by name
    df = read_submission(out)
    # stage 1 has a 30th class, the carpal region: it never reaches the submission
    assert stage1_run.best.is_file() and "carpal_region" in str(torch_names(stage1_run.best))
    assert len(df) == 6 * 29 and df["class"].tolist() == list(CLASSES) * 6
    assert REAL.name in set(df["image_name"])
    check = run("validate-submission", out, "--images", test_images)  # bounds from each image's own size
    assert check.exit_code == 0, check.output


def test_unreadable_image_stops_cleanly_or_is_skipped(stage1_run, test_images, tmp_path):
    (test_images / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "sub.csv"
    result = run("predict", "--stage1", stage1_run.best, "--stage1-only", "--images", test_images, "--out", out)
    assert result.exit_code == 2 and "broken.png" in result.output and "Traceback" not in result.output
    assert not out.exists()
    result = run("predict", "--stage1", stage1_run.best, "--stage1-only", "--images", test_images, "--out", out,
                 "--skip-bad")
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.png" in result.output
    rows = read_submission(out).query("image_name == 'broken.png'")
    assert len(rows) == 29 and (rows["rle"] == "").all()


def test_predict_needs_stage2_or_stage1_only(stage1_run, test_images, tmp_path):
    result = run("predict", "--stage1", stage1_run.best, "--images", test_images, "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "--stage2 is required" in result.output
    result = run("predict", "--stage1", tmp_path / "none.pt", "--stage1-only", "--images", test_images,
                 "--out", tmp_path / "s.csv")
    assert result.exit_code == 2 and "none.pt: stage 1 weights not found" in result.output
    for name, content in (("junk.bin", b"\x00" * 64), ("junk.pt", b"not a checkpoint")):
        (tmp_path / name).write_bytes(content)
        result = run("predict", "--stage1", tmp_path / name, "--stage1-only", "--images", test_images,
                     "--out", tmp_path / "s.csv")
        assert result.exit_code == 2 and f"{name}:" in result.output and "Traceback" not in result.output


def test_evaluate_stage1_writes_the_report(stage1_run, synth_root, yolo_set, tmp_path):
    result = run("evaluate", "--data", synth_root / "train", "--folds-file", yolo_set / "folds.json", "--fold", 0,
                 "--stage1", stage1_run.best, "--out", tmp_path / "report", "--device", "cpu")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "report" / "dice.csv")
    assert list(df.columns) == ["class", "stage1_dice"]
    assert df["class"].tolist() == list(CLASSES) + ["mean", "carpal_mean"]
    assert df["stage1_dice"].between(0, 1).all()
    assert (tmp_path / "report" / "dice.png").stat().st_size > 0
    assert "hit rate" in (tmp_path / "report" / "dice.md").read_text()


def test_evaluate_scores_a_perfect_submission_as_one(synth_root, tmp_path):
    items = scan(synth_root / "train").items[:3]
    perfect = {s.item.name: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(items)}
    write_submission(tmp_path / "truth.csv", perfect)
    result = run("evaluate", "--data", synth_root / "train", "--submission", tmp_path / "truth.csv",
                 "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    df = pd.read_csv(tmp_path / "r" / "dice.csv")
    assert (df["submission_dice"] == 1.0).all()
    poses = pd.read_csv(tmp_path / "r" / "pose.csv", index_col="method")
    assert set(poses.loc["submission"].dropna()) == {1.0}
    bad = run("evaluate", "--data", synth_root / "train", "--submission", tmp_path / "truth.csv",
              "--out", tmp_path / "r2", "--bent-share", "1.5")
    assert bad.exit_code == 2 and "--bent-share" in bad.output and not (tmp_path / "r2").exists()


def test_evaluate_scores_a_submission_against_labels_kept_apart(tmp_path):
    data = tmp_path / "set"
    summary = generate(data, patients=1, test_patients=2, size=192, seed=4, test_labels=True)
    items = scan(data / "test", labels=summary["test_labels"]).items
    perfect = {s.item.name: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(items)}
    write_submission(tmp_path / "truth.csv", perfect)
    args = ["evaluate", "--data", data / "test", "--submission", tmp_path / "truth.csv"]
    result = run(*args, "--labels", summary["test_labels"], "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert (pd.read_csv(tmp_path / "r" / "dice.csv")["submission_dice"] == 1.0).all()
    unlabelled = run(*args, "--out", tmp_path / "r2")  # test/ holds no labels of its own
    assert unlabelled.exit_code == 2 and "outputs_json" in unlabelled.output
    missing = run(*args, "--labels", tmp_path / "nowhere", "--out", tmp_path / "r3")
    assert missing.exit_code == 2 and "nowhere: labels folder not found" in missing.output
    mixed = run(*args, "--labels", summary["test_labels"], "--folds-file", tmp_path / "f.json",
                "--out", tmp_path / "r4")
    assert mixed.exit_code == 2 and "--labels" in mixed.output


@pytest.mark.parametrize("args, words", [
    ([], "--stage1 is required"),
    (["--base", "b.csv", "--stage1-only"], "drop --base"),
    (["--stage1", "s1.pt"], "--stage2 is required"),
    (["--stage1", "s1.pt", "--stage1-only", "--tta"], "--stage1-only leaves stage 2 out"),
    (["--stage1", "s1.pt", "--stage1-only", "--shard", "1/2/3"], "'--shard': '1/2/3': expected i/n"),
    (["--stage1", "s1.pt", "--stage1-only", "--shard", "2/2"], "'--shard': '2/2': expected 0 <= i < n"),
])
def test_predict_options_are_checked_where_they_are_parsed(synth_root, tmp_path, args, words):
    """A bad value or combination is click's usage error: one Error line naming the flag, exit 2, nothing read
    or written."""
    result = run("predict", "--images", synth_root / "test" / "DCM", "--out", tmp_path / "s.csv", *args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and words in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "s.csv").exists()


def test_predict_from_python_takes_typed_values(stage1_run, test_images, tmp_path):
    from cascade.predict import run_prediction

    summary = run_prediction(test_images, tmp_path / "part.csv", stage1_run.best, None, shard=(1, 3), device="cpu",
                             workers=2)
    assert summary.images == 2 and (tmp_path / "part.csv").is_file()
    with pytest.raises(ValueError):
        run_prediction(test_images, tmp_path / "bad.csv", stage1_run.best, None, shard=(3, 3), device="cpu")


@pytest.mark.parametrize("args, words", [
    (["--folds-file", "{folds}", "--stage1", " , "], "'--stage1': ' , ': no model path"),
    (["--submission", "{truth}", "--bent-share", "1.5"], "'--bent-share': '1.5': expected a share between 0 and 1"),
    (["--folds-file", "{folds}", "--folds", "{folds}", "--stage1", "s1.pt"], "--folds is the old spelling"),
])
def test_evaluate_option_values_are_checked_where_they_are_parsed(synth_root, yolo_set, tmp_path, args, words):
    write_submission(tmp_path / "t.csv", {scan(synth_root / "train").items[0].name: [""] * 29})
    fill = {"truth": tmp_path / "t.csv", "folds": yolo_set / "folds.json"}
    args = [a.format(**fill) for a in args]
    result = run("evaluate", "--data", synth_root / "train", "--out", tmp_path / "r", *args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and words in errors[0], result.output
    assert "Traceback" not in result.output and not (tmp_path / "r").exists()


def test_evaluate_still_takes_the_old_folds_spelling_with_a_note(synth_root, yolo_set, tmp_path):
    args = ["evaluate", "--data", synth_root / "train", "--stage1", tmp_path / "none.pt", "--out", tmp_path / "r"]
    old = run(*args, "--folds", yolo_set / "folds.json")
    new = run(*args, "--folds-file", yolo_set / "folds.json")
    assert old.output == "note: --folds is now spelled --folds-file\n" + new.output
    assert old.exit_code == new.exit_code == 2 and "none.pt: model file not found" in new.output


@pytest.mark.parametrize("options, words", [
    ({"submission": "{truth}", "stage1": ["s1.pt"]}, "--submission scores a CSV"),
    ({"stage1": ["s1.pt"]}, "--folds-file are required"),
    ({"folds_file": "{folds}", "base": "{truth}"}, "--base is scored with stage 2"),
    ({"folds_file": "{folds}", "folds": [0, 1], "stage1": ["s1.pt"]}, "2 --fold(s) need as many --stage1 (got 1)"),
])
def test_evaluate_combinations_are_refused_by_the_command_and_the_library(synth_root, yolo_set, tmp_path, options,
                                                                        words):
    """The command names its flags (usage error, exit 2, nothing written); the library, called from Python with
    the same values, refuses them too, naming its parameters."""
    from cascade.evaluate import run_evaluation

    item = scan(synth_root / "train").items[0]
    write_submission(tmp_path / "t.csv", {item.name: [""] * 29})
    fill = {"truth": tmp_path / "t.csv", "folds": yolo_set / "folds.json"}
    options = {k: v.format(**fill) if isinstance(v, str) else v for k, v in options.items()}
    with pytest.raises(ValueError):
        run_evaluation(synth_root / "train", tmp_path / "r", **options)
    args = []
    for key, value in options.items():
        flag = "--" + {"folds": "fold"}.get(key, key).replace("_", "-")
        args += [a for v in (value if isinstance(value, list) else [value]) for a in (flag, v)]
    result = run("evaluate", "--data", synth_root / "train", "--out", tmp_path / "r", *args)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and words in errors[0], result.output
    assert not (tmp_path / "r").exists()


def test_evaluate_from_python_takes_plain_values(synth_root, tmp_path):
    from cascade.evaluate import run_evaluation

    items = scan(synth_root / "train").items[:2]
    perfect = {s.item.name: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(items)}
    write_submission(tmp_path / "truth.csv", perfect)
    result = run_evaluation(synth_root / "train", tmp_path / "r", submission=tmp_path / "truth.csv")
    assert result.plan is None and result.bent_share == 0.58 and (result.scores.table() == 1.0).all().all()
    assert run_evaluation(synth_root / "train", tmp_path / "r", submission=tmp_path / "truth.csv",
                          bent_share=None).bent_share is None


def test_visualize_draws_on_a_real_radiograph(stage1_run, tmp_path):
    result = run("visualize", "--image", REAL, "--stage1", stage1_run.best, "--out", tmp_path / "v.png")
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "v.png")).shape == (2880, 2304, 3)


def test_sharded_predict_merged_equals_unsharded_byte_for_byte(stage1_run, test_images, tmp_path):
    common = ["--stage1", stage1_run.best, "--stage1-only", "--images", test_images, "--device", "cpu"]
    assert run("predict", *common, "--out", tmp_path / "all.csv").exit_code == 0
    for i in range(3):
        result = run("predict", *common, "--shard", f"{i}/3", "--out", tmp_path / f"part{i}.csv")
        assert result.exit_code == 0, result.output
    parts = [tmp_path / f"part{i}.csv" for i in (2, 0, 1)]  # order of the parts does not matter
    merged = run("merge-submissions", *parts, "--out", tmp_path / "merged.csv", "--images", test_images)
    assert merged.exit_code == 0, merged.output
    assert (tmp_path / "merged.csv").read_bytes() == (tmp_path / "all.csv").read_bytes()
    twice = run("merge-submissions", parts[0], parts[0], "--out", tmp_path / "bad.csv")
    assert twice.exit_code == 2 and "also in another part" in twice.output
    short = run("merge-submissions", *parts[:2], "--out", tmp_path / "short.csv", "--images", test_images)
    assert short.exit_code == 2 and "not written" in short.output and not (tmp_path / "short.csv").exists()
    before = parts[0].read_bytes()
    onto = run("merge-submissions", *parts, "--out", parts[0])
    assert onto.exit_code == 2 and "inputs" in onto.output and parts[0].read_bytes() == before
    assert run("predict", *common, "--shard", "3/3", "--out", tmp_path / "x.csv").exit_code == 2


def test_outputs_never_replace_inputs_and_are_checked_before_the_work(stage1_run, test_images, tmp_path):
    weights = tmp_path / "w.pt"
    shutil.copy(stage1_run.best, weights)
    before = weights.read_bytes()
    common = ["predict", "--stage1", weights, "--stage1-only", "--images", test_images]
    for out, words in ((weights, "expected a .csv"), (tmp_path / "sub.txt", "expected a .csv"),
                       (tmp_path / "w.pt" / "sub.csv", "cannot write into")):
        result = run(*common, "--out", out)
        assert result.exit_code == 2 and words in result.output and result.output.count("\n") == 1, result.output
    assert weights.read_bytes() == before
    image = sorted(test_images.rglob("*.png"))[0]
    picture = image.read_bytes()
    result = run("visualize", "--image", image, "--stage1", weights, "--out", image)
    assert result.exit_code == 2 and "inputs" in result.output and image.read_bytes() == picture
    (tmp_path / "v_compare.png").mkdir()  # where the stage 1 / cascade panel would go
    result = run("visualize", "--image", image, "--stage1", weights, "--stage2", tmp_path / "s2.pt",
                 "--out", tmp_path / "v.png")
    assert result.exit_code == 2 and "is a folder" in result.output and not (tmp_path / "v.png").exists()


def test_contradictory_options_and_folders_for_files_are_one_line_errors(stage1_run, synth_root, test_images,
                                                                           tmp_path):
    common = ["predict", "--stage1", stage1_run.best, "--images", test_images, "--out", tmp_path / "s.csv"]
    result = run(*common, "--stage1-only", "--stage2", tmp_path / "s2.pt")
    assert result.exit_code == 2 and "--stage1-only leaves stage 2 out" in result.output
    result = run(*common, "--stage1-only", "--device", "gpu0")
    assert result.exit_code == 2 and "device 'gpu0'" in result.output and result.output.count("\n") == 1
    result = run(*common, "--stage2", tmp_path / "s2.pt", "--paste-file", tmp_path)  # a folder, not paste.json
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Traceback" not in result.output
    truth = tmp_path / "t.csv"
    item = scan(synth_root / "train").items[0]
    write_submission(truth, {item.name: [""] * 29})
    result = run("evaluate", "--data", synth_root / "train", "--submission", truth, "--stage1", stage1_run.best,
                 "--out", tmp_path / "r")
    assert result.exit_code == 2 and "drop --stage1" in result.output


def test_a_stage1_only_report_removes_an_earlier_paste_plan(stage1_run, synth_root, yolo_set, tmp_path):
    report = tmp_path / "report"
    report.mkdir()
    (report / "paste.json").write_text("{}")
    result = run("evaluate", "--data", synth_root / "train", "--folds-file", yolo_set / "folds.json",
                 "--stage1", stage1_run.best, "--out", report, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert not (report / "paste.json").exists()


def test_predict_under_torchrun_writes_the_single_process_submission_once(stage1_run, stage2_run, test_images,
                                                                          tmp_path):
    """Two processes (gloo on the CPU), each its rank's share of the images; rank 0 alone writes the whole
    submission, byte for byte what one process writes."""
    import os
    import subprocess
    import sys

    common = ["--stage1", stage1_run.best, "--stage2", stage2_run.best, "--images", test_images, "--device", "cpu"]
    alone = run("predict", *common, "--out", tmp_path / "alone.csv")
    assert alone.exit_code == 0, alone.output
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(root)}
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              "-m", "cascade.cli", "predict", *map(str, common)]
    done = subprocess.run([*launch, "--out", str(tmp_path / "ranks.csv")], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "ranks.csv").read_bytes() == (tmp_path / "alone.csv").read_bytes()
    assert done.stdout.count("passed validate-submission") == 1  # reported once, by rank 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".csv") == ["alone.csv", "ranks.csv"]
