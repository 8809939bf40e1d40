import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cascade.cli import main
from convert.check import check_dataset
from convert.dataset import load_sample, parse_annotation, scan
from convert.images import read_gray, read_image, to_gray_uint8
from plumbing.errors import DataError


def _first(root):
    item = scan(root).items[0]
    return item, json.loads(item.label.read_text())


def test_pairs_images_with_json_and_takes_patient_from_folder(synth_root):
    listing = scan(synth_root / "train")
    assert not listing.problems
    assert len(listing.items) == 12 and len(listing.patients) == 6
    for item in listing.items:
        assert item.label.parent.name == item.image.parent.name == item.patient
        assert item.label.stem == item.image.stem


def test_size_comes_from_the_image_not_the_json_metadata(synth_root):
    item, doc = _first(synth_root / "train")
    sample = load_sample(item)
    assert sample.hw == (192, 192)
    assert doc["metadata"] != {"width": 192, "height": 192}  # the JSON lies, like the real files
    assert sorted(c for c, _ in sample.polygons) == list(range(29))


def test_reads_16_bit_and_colour_images(tmp_path):
    grey = (np.arange(64 * 48, dtype=np.uint32).reshape(64, 48) % 4096).astype(np.uint16)  # 12-bit detector
    cv2.imwrite(str(tmp_path / "g16.png"), grey)
    out = read_gray(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.max() == 255 and out.shape == (64, 48)
    colour = np.dstack([np.full((5, 7), v, np.uint8) for v in (10, 20, 30)])
    cv2.imwrite(str(tmp_path / "c.jpg"), colour)
    assert read_image(tmp_path / "c.jpg").shape == (5, 7, 3)
    assert to_gray_uint8(colour).shape == (5, 7)


def _damage(root, how):
    item, doc = _first(root)
    if how == "unknown label":
        doc["annotations"].append(dict(doc["annotations"][0], label="Sesamoid"))
    elif how == "two points":
        doc["annotations"][3]["points"] = doc["annotations"][3]["points"][:2]
    elif how == "out of bounds":
        doc["annotations"][5]["points"][0] = [500, 10]
    elif how == "missing class":
        doc["annotations"] = [a for a in doc["annotations"] if a["label"] != "Pisiform"]
    elif how.endswith(" label"):  # an extra annotation, so that no class goes missing
        doc["annotations"].append(dict(doc["annotations"][0], label=NON_STRING_LABELS[how]))
    elif how == "boolean point":
        doc["annotations"][6]["points"][0] = [True, 10]
    elif how == "string point":
        doc["annotations"][6]["points"][0] = ["12", 10]
    elif how == "huge coordinate":
        doc["annotations"][6]["points"][0] = [10**400, 10]
    elif how == "one repeated point":
        doc["annotations"][27]["points"] = [[50, 60]] * 5
    elif how == "points on a line":
        doc["annotations"][27]["points"] = [[10, 10], [20, 20], [40, 40], [30, 30]]
    elif how == "second polygon":
        doc["annotations"].append(dict(doc["annotations"][28]))
    if how == "truncated":
        item.label.write_text(json.dumps(doc)[:200])
    elif how == "missing json":
        item.label.unlink()
    elif how == "orphan json":
        item.image.unlink()
    elif how == "corrupt image":
        item.image.write_bytes(item.image.read_bytes()[:100])
    else:
        item.label.write_text(json.dumps(doc))
    return item


NON_STRING_LABELS = {"list label": ["finger-1"], "object label": {"name": "finger-1"}, "number label": 3,
                     "boolean label": True, "null label": None}

CASES = {
    "unknown label": "unknown label",
    "list label": "(['finger-1']): label is a list, not a class name",
    "object label": "label is an object, not a class name",
    "number label": "label is a number, not a class name",
    "boolean label": "label is a boolean, not a class name",
    "null label": "label is null, not a class name",
    "boolean point": "('finger-7'): point 0 holds true, not a number",
    "string point": 'point 0 holds "12", not a number',
    "huge coordinate": "('finger-7'): a coordinate is too large",
    "one repeated point": "('Radius'): polygon has zero area (all 5 points are the same)",
    "points on a line": "('Radius'): polygon has zero area (all points lie on one line)",
    "second polygon": "('Ulna'): a second polygon for this class (annotation 28 is the first",
    "two points": "has 2 points, needs at least 3",
    "out of bounds": "outside the 192x192 image",
    "missing class": "missing classes: Pisiform",
    "truncated": "not valid JSON",
    "missing json": "no annotation outputs_json/",
    "orphan json": "annotation without an image",
    "corrupt image": "cannot decode image",
}


@pytest.mark.parametrize("how", CASES)
def test_every_problem_is_reported_with_its_file(train_copy, how):
    item = _damage(train_copy, how)
    report = check_dataset(train_copy, workers=2)
    assert not report.ok
    [problem] = report.problems
    assert CASES[how] in problem.reason
    assert problem.path in (str(item.image), str(item.label))
    assert report.valid == 11  # the other images are untouched


@pytest.mark.parametrize("how", ["unknown label", "corrupt image"])
def test_cli_check_and_convert_refuse_bad_data_in_one_line(train_copy, tmp_path, how):
    _damage(train_copy, how)
    runner = CliRunner()
    check = runner.invoke(main, ["check-data", "--data", str(train_copy)])
    assert check.exit_code == 1 and CASES[how] in check.output and "problems: 1" in check.output

    out = tmp_path / "yolo"
    conv = runner.invoke(main, ["convert", "--data", str(train_copy), "--out", str(out), "--folds", "3"])
    assert conv.exit_code == 2
    err = [line for line in conv.output.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and CASES[how] in err[0] and "Traceback" not in conv.output
    assert not out.exists() and not list(tmp_path.glob(".yolo*")), "nothing half-written"


def test_skip_bad_drops_only_the_bad_image(train_copy, tmp_path):
    item = _damage(train_copy, "two points")
    result = CliRunner().invoke(main, ["convert", "--data", str(train_copy), "--out", str(tmp_path / "y"),
                                       "--folds", "3", "--skip-bad"])
    assert result.exit_code == 0, result.output
    assert "1 problems" in result.output
    written = list((tmp_path / "y" / "labels").rglob("*.txt"))
    assert len(written) == 11
    assert not any(item.image.stem in p.name for p in written)
    assert "skipped" in result.output and str(item.label) in result.output


def test_missing_folders_are_one_line_errors(tmp_path):
    with pytest.raises(DataError, match="no DCM/ folder"):
        scan(tmp_path)
    result = CliRunner().invoke(main, ["check-data", "--data", str(tmp_path / "nowhere")])
    assert result.exit_code == 2 and result.output.startswith("error:") and result.output.count("\n") == 1


def test_label_path_that_is_a_folder_is_one_problem(tmp_path):
    polygons, problems = parse_annotation(tmp_path, (64, 64))
    assert polygons == [] and [str(p) for p in problems] == [f"{tmp_path}: is a folder, not an annotation JSON file"]


@pytest.mark.parametrize("text,why", [
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"annotations": [{"label": "Ulna", "points": [[1' + "0" * 5000 + ", 1]]}]}", "not valid JSON"),
    ('{"annotations": ["Ulna"]}', "annotation 0 is a string, not an object"),
    ('{"annotations": [{"points": [[1, 1], [5, 1], [1, 5]]}]}', "annotation 0: no label"),
])
def test_odd_json_is_a_problem_not_a_crash(tmp_path, text, why):
    path = tmp_path / "a.json"
    path.write_text(text)
    _, problems = parse_annotation(path, (64, 64), require_all=False)
    assert [p.path for p in problems] == [str(path)] and why in problems[0].reason


def test_visualize_with_a_folder_as_labels_is_one_line(synth_root, tmp_path):
    item = scan(synth_root / "train").items[0]
    result = CliRunner().invoke(main, ["visualize", "--image", str(item.image), "--stage1", str(tmp_path / "none.pt"),
                                       "--labels", str(tmp_path), "--out", str(tmp_path / "v.png")])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    assert result.output == f"error: {tmp_path}: is a folder, not an annotation JSON file\n"
