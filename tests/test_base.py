"""The cascade over any full-hand model's submission (`--base`): predict and evaluate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cascade.cli import main
from cascade.evaluate import held_out
from cascade.pipeline import Cascade
from convert.carpal_region import carpal_region
from convert.classes import CARPAL_INDICES, CARPALS, CLASSES
from convert.dataset import iter_samples, scan
from convert.masks import class_masks
from convert.submission import encode_masks, read_submission, write_submission
from convert.submission_rows import SubmissionRows


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def truth(synth_root):
    """Every labelled image's ground-truth masks, by file name."""
    return {s.item.name: class_masks(s.polygons, s.hw) for s in iter_samples(scan(synth_root / "train").items)}


@pytest.fixture
def images(synth_root, tmp_path):
    """The labelled images as a flat folder of 'test' images."""
    folder = tmp_path / "images"
    folder.mkdir()
    for item in scan(synth_root / "train").items[:4]:
        shutil.copy(item.image, folder / item.image.name)
    return folder


def base_file(path, truth, names=None, empty=()):
    """A submission made of the ground truth, with the classes in `empty` left empty."""
    rows = {}
    for name, masks in truth.items():
        if names is None or name in names:
            masks = masks.copy()
            masks[list(empty)] = 0
            rows[name] = encode_masks(masks)
    write_submission(path, rows)
    return path


def lines_by_row(path):
    lines = path.read_text().splitlines()[1:]
    return {tuple(line.split(",")[:2]): line for line in lines}


def test_base_rows_not_pasted_are_byte_identical_and_empty_carpals_are_all_pasted(stage2_run, truth, images,
                                                                                   tmp_path):
    names = {p.name for p in images.iterdir()}
    base = base_file(tmp_path / "base.csv", truth, empty=CARPAL_INDICES)  # more images than the folder holds
    out = tmp_path / "out.csv"
    result = run("predict", "--base", base, "--stage2", stage2_run.best, "--images", images, "--out", out,
                 "--device", "cpu")
    assert result.exit_code == 0, result.output
    # no carpal in the base: every region came from its neighbours
    assert f"detected 0, carpals 0, neighbours {len(names)}, prior 0" in result.output
    before, after = lines_by_row(base), lines_by_row(out)
    assert {n for n, _ in after} == names
    for key, line in after.items():
        if key[1] in CARPALS:
            continue
        assert line == before[key]  # byte for byte
    pasted = read_submission(out).query("`class` in @CARPALS")
    assert (pasted["rle"] != "").any()  # stage 2 filled the empty carpal rows


def test_region_from_the_base_masks_and_its_fallbacks(stage2_run, truth, tmp_path):
    name, masks = next(iter(truth.items()))
    for empty, source in (((), "carpals"), (CARPAL_INDICES, "neighbours"), (range(len(CLASSES)), "prior")):
        m = masks.copy()
        m[list(empty)] = 0
        base = SubmissionRows(write_base(tmp_path / f"{source}.csv", {name: m}))
        model = Cascade(None, stage2_run.best, device="cpu", base=base)
        image = np.zeros(m.shape[1:], np.uint8)
        out = model.run([image], [name])[0]
        assert out.region.source == source
        assert out.region == carpal_region(m, model.stage2.region_cfg)
        assert np.array_equal(out.full_masks, m)


def write_base(path, masks_by_name):
    write_submission(path, {n: encode_masks(m) for n, m in masks_by_name.items()})
    return path


def test_a_base_missing_an_image_or_a_class_or_too_long_a_run_stops_before_writing(stage2_run, truth, images,
                                                                                   tmp_path):
    names = sorted(p.name for p in images.iterdir())
    out = tmp_path / "out.csv"

    def predict(base):
        return run("predict", "--base", base, "--stage2", stage2_run.best, "--images", images, "--out", out,
                   "--device", "cpu")

    lacking = base_file(tmp_path / "lacking.csv", truth, names=set(names[1:]))
    result = predict(lacking)
    assert result.exit_code == 2 and "lacking.csv" in result.output and names[0] in result.output
    assert "Traceback" not in result.output and not out.exists()

    full = base_file(tmp_path / "full.csv", truth, names=set(names))
    lines = full.read_text().splitlines(keepends=True)
    del lines[1 + CLASSES.index("Capitate")]  # the first image's Capitate row (line 1 is the header)
    (tmp_path / "noclass.csv").write_text("".join(lines))
    result = predict(tmp_path / "noclass.csv")
    assert result.exit_code == 2 and "noclass.csv" in result.output and names[0] in result.output
    assert "Capitate" in result.output and not out.exists()

    df = read_submission(full)
    h, w = truth[names[1]].shape[1:]
    df.loc[(df.image_name == names[1]) & (df["class"] == "Radius"), "rle"] = f"{h * w - 3} 10"
    df.to_csv(tmp_path / "big.csv", index=False)
    result = predict(tmp_path / "big.csv")
    assert result.exit_code == 2 and "big.csv" in result.output and f"{names[1]} Radius" in result.output
    assert f"{w}x{h}" in result.output and not out.exists()


def test_evaluate_over_a_base(stage2_run, synth_root, yolo_set, truth, tmp_path):
    data, folds = synth_root / "train", yolo_set / "folds.json"

    def evaluate(base, out):
        result = run("evaluate", "--data", data, "--folds-file", folds, "--fold", 0, "--base", base,
                     "--stage2", stage2_run.best, "--out", out, "--device", "cpu")
        assert result.exit_code == 0, result.output
        return pd.read_csv(out / "dice.csv", index_col="class"), json.loads((out / "paste.json").read_text())

    # the ground truth of every training image (more than the fold): nothing can beat it, nothing is pasted
    table, plan = evaluate(base_file(tmp_path / "truth.csv", truth), tmp_path / "perfect")
    assert "base_dice" in table.columns and "stage1_dice" not in table.columns and "cascade_dice" in table.columns
    assert (table["base_dice"] == 1.0).all()
    assert plan["paste_classes"] == []

    # carpals empty in the base: the cascade beats it on every carpal bone it finds
    table, plan = evaluate(base_file(tmp_path / "nocarpals.csv", truth, empty=CARPAL_INDICES), tmp_path / "nc")
    assert (table.loc[list(CARPALS), "base_dice"] == 0).all()
    assert set(plan["paste_classes"]) <= set(CARPALS) and plan["paste_classes"]
    others = [c for c in CLASSES if c not in CARPALS]
    assert (table.loc[others, "cascade_dice"] == 1.0).all()  # what is not pasted stays the base's

    fold_names = {i.name for i in held_out(data, folds, 0)}
    partial = base_file(tmp_path / "partial.csv", truth, names=set(list(fold_names)[1:]))
    result = run("evaluate", "--data", data, "--folds-file", folds, "--fold", 0, "--base", partial,
                 "--stage2", stage2_run.best, "--out", tmp_path / "p", "--device", "cpu")
    assert result.exit_code == 2 and "partial.csv" in result.output and "fold 0" in result.output


def test_an_unreadable_image_keeps_the_base_rows_with_skip_bad(stage2_run, truth, images, tmp_path):
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    rows = {n: encode_masks(m) for n, m in truth.items()}
    rows["broken.png"] = rows[next(iter(truth))]  # what the user's model predicted for it
    write_submission(tmp_path / "base.csv", rows)
    out = tmp_path / "out.csv"
    args = ["predict", "--base", tmp_path / "base.csv", "--stage2", stage2_run.best, "--images", images,
            "--out", out, "--device", "cpu"]
    result = run(*args)
    assert result.exit_code == 2 and "broken.png" in result.output and not out.exists()
    assert result.output.rstrip().endswith("(or pass --skip-bad to leave it out)")  # the command names its flag
    from cascade.predict import UnreadableImage, run_prediction

    with pytest.raises(UnreadableImage, match="broken.png") as raised:  # the library names none
        run_prediction(images, out, None, stage2_run.best, base=tmp_path / "base.csv", device="cpu")
    assert "--" not in raised.value.reason and not out.exists()
    result = run(*args, "--skip-bad")
    assert result.exit_code == 0, result.output
    broken = read_submission(out).query("image_name == 'broken.png'")["rle"].tolist()
    assert broken == rows["broken.png"]


def test_base_boxes_hold_each_class_so_encoding_from_them_repeats_its_rows(truth, tmp_path):
    """The cascade encodes a base's masks from the boxes its runs give (rle.runs_box), never scanning 4 MB."""
    from convert import rle

    base = SubmissionRows(base_file(tmp_path / "base.csv", truth, empty=[CLASSES.index("Pisiform")]))
    for name, masks in list(truth.items())[:3]:
        boxes = base.boxes(name, masks.shape[1:])
        assert (boxes[CLASSES.index("Pisiform")] == 0).all()  # an empty row gives an empty box
        assert base.rows(name) == [rle.encode(m, b) for m, b in zip(base.masks(name, masks.shape[1:]), boxes)]
