"""Every image format the README promises, through check-data, convert, predict and evaluate: 8- and 16-bit grey
PNG, RGB and RGBA PNG, grey and colour JPEG, and a JPEG with an EXIF orientation tag (read as stored, reported)."""

import io
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from cascade.cli import main
from convert.dataset import iter_samples, scan
from convert.images import EXIF_ORIENTATION_TAG, read_image, to_gray_uint8
from convert.masks import class_masks
from convert.submission import encode_masks, read_submission, write_submission

PATIENTS = 2   # of synth_root's 6: 4 images per format keep the test quick
TURNED = 6     # EXIF orientation "rotate 90 degrees clockwise to display"
JPEG_QUALITY = 95


def _jpeg(pixels: np.ndarray, exif: bytes | None = None) -> bytes:
    mode = "L" if pixels.ndim == 2 else "RGB"
    rgb = pixels if pixels.ndim == 2 else pixels[..., ::-1]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb), mode).save(buf, "JPEG", quality=JPEG_QUALITY,
                                                          **({"exif": exif} if exif else {}))
    return buf.getvalue()


def _png(pixels: np.ndarray) -> bytes:
    return cv2.imencode(".png", pixels)[1].tobytes()


def _tint(grey):  # a real colour image: channels differ
    return np.dstack([grey, (grey * 0.9).astype(np.uint8), np.maximum(grey, 20)])


def _turned_exif() -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = TURNED
    return exif.tobytes()


FORMATS = {  # name -> (suffix, encoder of the grey 8-bit pixels, what check-data calls the format)
    "grey 8-bit PNG": (".png", _png, "grey 8-bit"),
    "grey 16-bit PNG": (".png", lambda g: _png(g.astype(np.uint16) * 257), "grey 16-bit"),
    "RGB PNG": (".png", lambda g: _png(np.dstack([g] * 3)), "colour 8-bit"),
    "RGBA PNG": (".png", lambda g: _png(np.dstack([g] * 3 + [np.full_like(g, 255)])), "colour 8-bit"),
    "grey JPEG": (".jpg", _jpeg, "grey 8-bit"),
    "colour JPEG": (".jpg", lambda g: _jpeg(_tint(g)), "colour 8-bit"),
    "JPEG with EXIF orientation": (".jpg", lambda g: _jpeg(g, _turned_exif()), "grey 8-bit"),
}
# the same grey pixels once read (16-bit images are stretched by their own maximum, so not these)
LOSSLESS_LIKE_GREY = ("RGB PNG", "RGBA PNG")


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _reencode(src_root, dst_root, fmt):
    suffix, encode, _ = FORMATS[fmt]
    items = [i for i in scan(src_root).items if i.patient in scan(src_root).patients[:PATIENTS]]
    for item in items:
        image = dst_root / "DCM" / item.patient / (item.image.stem + suffix)
        label = dst_root / "outputs_json" / item.patient / item.label.name
        image.parent.mkdir(parents=True, exist_ok=True)
        label.parent.mkdir(parents=True, exist_ok=True)
        image.write_bytes(encode(cv2.imread(str(item.image), cv2.IMREAD_GRAYSCALE)))
        shutil.copy(item.label, label)
    return items


@pytest.fixture(scope="module")
def formats(synth_root, stage1_run, stage2_run, tmp_path_factory):
    """Per format: its data folder, its conversion (2 folds) and the result of predicting every image of it with
    both stages."""
    out = {}
    for k, fmt in enumerate(FORMATS):
        root = tmp_path_factory.mktemp(f"format{k}")
        items = _reencode(synth_root / "train", root / "train", fmt)
        sub = root / "sub.csv"
        result = run("predict", "--stage1", stage1_run.best, "--stage2", stage2_run.best, "--images",
                     root / "train" / "DCM", "--out", sub, "--device", "cpu")
        convert = run("convert", "--data", root / "train", "--out", root / "yolo", "--folds", "2")
        out[fmt] = {"data": root / "train", "items": items, "predict": result, "submission": sub,
                    "convert": convert, "yolo": root / "yolo"}
    return out


@pytest.mark.parametrize("fmt", FORMATS)
def test_check_data_reads_the_format(formats, fmt):
    result = run("check-data", "--data", formats[fmt]["data"])
    assert result.exit_code == 0, result.output
    assert f"formats: {FORMATS[fmt][2]} x4" in result.output and "problems: 0" in result.output
    assert ("EXIF orientation 6 ignored: read as stored" in result.output) == (fmt == "JPEG with EXIF orientation")


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_writes_what_yolo_reads_at_the_annotated_size(formats, fmt):
    result, yolo = formats[fmt]["convert"], formats[fmt]["yolo"]
    assert result.exit_code == 0, result.output
    index = pd.read_csv(yolo / "index.csv")
    assert len(index) == 4 and set(zip(index["height"], index["width"])) == {(192, 192)}
    for row in index.itertuples():
        # as ultralytics reads it: cv2.imread, which turns a JPEG by its EXIF tag
        seen = cv2.imread(str(yolo / row.file), cv2.IMREAD_GRAYSCALE)
        stored = to_gray_uint8(read_image(row.source))
        assert seen.shape == stored.shape
        if fmt != "colour JPEG":  # libjpeg's own grey conversion rounds differently
            assert np.array_equal(seen, stored), row.file  # the pixels the labels were drawn on, not turned
        label = (yolo / row.file.replace("images/", "labels/")).with_suffix(".txt")
        assert len(label.read_text().splitlines()) == 30  # the 29 bones and the carpal region
    assert ("EXIF orientation tag" in result.output) == (fmt == "JPEG with EXIF orientation")


@pytest.mark.parametrize("fmt", FORMATS)
def test_predict_writes_a_valid_submission_at_each_images_stored_size(formats, fmt):
    f = formats[fmt]
    assert f["predict"].exit_code == 0, f["predict"].output
    assert ("EXIF orientation tag" in f["predict"].output) == (fmt == "JPEG with EXIF orientation")
    check = run("validate-submission", f["submission"], "--images", f["data"] / "DCM")
    assert check.exit_code == 0, check.output
    if fmt in LOSSLESS_LIKE_GREY:  # the same grey pixels: the same prediction
        same = formats["grey 8-bit PNG"]["submission"]
        assert read_submission(f["submission"])["rle"].tolist() == read_submission(same)["rle"].tolist()
    if fmt == "JPEG with EXIF orientation":  # the tag changes nothing: the stored pixels are read
        same = formats["grey JPEG"]["submission"]
        assert read_submission(f["submission"])["rle"].tolist() == read_submission(same)["rle"].tolist()


@pytest.mark.parametrize("fmt", FORMATS)
def test_evaluate_scores_against_masks_at_the_annotated_size(formats, fmt, synth_root, stage1_run, stage2_run,
                                                             tmp_path):
    f = formats[fmt]
    # the ground truth of the original PNGs, as a submission: a perfect score means the labels of the
    # re-encoded files were read at the size the annotations refer to
    truth = {s.item.image.stem: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(f["items"])}
    names = {i.image.stem: i.image.name for i in scan(f["data"]).items}
    write_submission(tmp_path / "truth.csv", {names[stem]: rle for stem, rle in truth.items()})
    perfect = run("evaluate", "--data", f["data"], "--submission", tmp_path / "truth.csv", "--out", tmp_path / "p")
    assert perfect.exit_code == 0, perfect.output
    assert (pd.read_csv(tmp_path / "p" / "dice.csv")["submission_dice"] == 1.0).all()

    assert f["convert"].exit_code == 0, f["convert"].output
    scored = run("evaluate", "--data", f["data"], "--folds-file", f["yolo"] / "folds.json", "--fold", 0,
                 "--stage1", stage1_run.best, "--stage2", stage2_run.best, "--out", tmp_path / "r",
                 "--device", "cpu")
    assert scored.exit_code == 0, scored.output
    dice = pd.read_csv(tmp_path / "r" / "dice.csv")
    assert {"stage1_dice", "cascade_dice"} <= set(dice.columns) and dice["stage1_dice"].notna().all()
    assert ("EXIF orientation tag" in scored.output) == (fmt == "JPEG with EXIF orientation")
