"""Any RLE a real mask can produce is read: Python's csv reader stops at 131,072 characters a field by default,
and a 512 x 512 mask of 20,000 runs writes more than that."""

import csv

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cascade.cli import main
from convert import rle
from convert.classes import CLASSES
from convert.submission import validate_submission, write_submission


@pytest.fixture
def long_field(tmp_path):
    """A 512 x 512 test image and a valid submission for it whose first mask has 20,000 runs."""
    images = tmp_path / "images" / "P1"
    images.mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), np.full((512, 512), 90, np.uint8))
    mask = np.zeros(512 * 512, np.uint8)
    mask[:40000:2] = 1  # 20,000 one-pixel runs
    code = rle.encode(mask.reshape(512, 512))
    assert len(code) > csv.field_size_limit()  # longer than the csv module reads by default
    path = tmp_path / "long.csv"
    write_submission(path, {"a.png": [code] + [""] * (len(CLASSES) - 1)})
    return path, tmp_path / "images", code


def test_validate_and_merge_read_a_long_field(long_field, tmp_path):
    path, images, _ = long_field
    limit = csv.field_size_limit()
    assert validate_submission(path, {"a.png": (512, 512)}).ok
    assert csv.field_size_limit() == limit  # the caller's csv setting is left as it was
    runner = CliRunner()
    result = runner.invoke(main, ["validate-submission", str(path), "--images", str(images)])
    assert result.exit_code == 0 and "valid (1 images, 29 rows)" in result.output, result.output
    merged = tmp_path / "merged.csv"
    result = runner.invoke(main, ["merge-submissions", str(path), "--out", str(merged), "--images", str(images)])
    assert result.exit_code == 0, result.output
    assert merged.read_bytes() == path.read_bytes()


def test_predict_over_a_base_with_a_long_field(long_field, stage2_run, tmp_path):
    path, images, code = long_field
    out = tmp_path / "sub.csv"
    result = CliRunner().invoke(main, ["predict", "--base", str(path), "--stage2", str(stage2_run.best),
                                       "--images", str(images), "--out", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output  # its own check of the file it wrote read the long row too
    previous = csv.field_size_limit(len(code) + 1)
    try:
        with open(out, newline="") as f:
            rows = list(csv.reader(f))
    finally:
        csv.field_size_limit(previous)
    assert rows[1] == ["a.png", CLASSES[0], code]  # the base's row, byte for byte
