"""A dangling symbolic link named like an image (or an annotation) is counted and named as a problem, never
skipped silently: check-data lists it, convert stops on it (or skips and lists it), predict names it."""

import os
import shutil

from click.testing import CliRunner

from cascade.cli import main
from convert.check import check_dataset
from convert.images import list_images


def test_check_data_and_convert_name_a_broken_image_link(train_copy, tmp_path):
    victim = sorted(train_copy.glob("DCM/*/*.png"))[0]
    victim.unlink()
    victim.symlink_to(tmp_path / "gone.png")
    report = check_dataset(train_copy, workers=1)
    assert [p.path for p in report.problems] == [str(victim)]
    assert "broken symbolic link" in report.problems[0].reason and "gone.png" in report.problems[0].reason
    runner = CliRunner()
    stopped = runner.invoke(main, ["convert", "--data", str(train_copy), "--out", str(tmp_path / "y"), "--folds", "3"])
    assert stopped.exit_code == 2 and str(victim) in stopped.output and "broken symbolic link" in stopped.output
    skipped = runner.invoke(main, ["convert", "--data", str(train_copy), "--out", str(tmp_path / "y"), "--folds", "3",
                                   "--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped {victim}: broken symbolic link" in skipped.output and "1 problems" in skipped.output


def test_predict_names_a_broken_image_link(synth_root, stage1_run, tmp_path):
    images = tmp_path / "images"
    shutil.copytree(synth_root / "test" / "DCM", images)
    link = images / "dangling.png"
    os.symlink(tmp_path / "nowhere.png", link)
    assert link in list_images(images)
    args = ["predict", "--stage1", str(stage1_run.best), "--stage1-only", "--images", str(images), "--out",
            str(tmp_path / "s.csv"), "--device", "cpu"]
    runner = CliRunner()
    stopped = runner.invoke(main, args)
    assert stopped.exit_code == 2 and f"{link}: broken symbolic link" in stopped.output, stopped.output
    skipped = runner.invoke(main, args + ["--skip-bad"])
    assert skipped.exit_code == 0, skipped.output
    assert f"skipped (empty masks written) {link}: broken symbolic link" in skipped.output
    assert "1 skipped" in skipped.output
