import csv
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from convert.carpal_region import RegionConfig, carpal_region
from convert.classes import CLASSES, REGION_CLASS, REGION_CLASS_ID
from convert.dataset import load_sample, scan
from convert.folds import load_folds
from convert.masks import class_masks, polygon_mask
from convert.yolo import ELLIPSE_VERTICES, convert_to_yolo
from plumbing.errors import DataError


@pytest.fixture(scope="module")
def converted(synth_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("yolo") / "set"
    result = convert_to_yolo(synth_root / "train", out, folds=3, fold=1, workers=2)
    return result


def test_layout_and_data_yaml(converted):
    out = converted.out
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert "path" not in doc  # ultralytics looks beside data.yaml: the folder may move (test below)
    assert doc["names"] == dict(enumerate([*CLASSES, REGION_CLASS])) and doc["nc"] == 30
    assert doc["cascade_region"] == {"margin": 0.12, "min_side": 0.15, "square": True, "min_carpals": 5,
                                     "shape": "ellipse"}
    assert converted.counts["train"] + converted.counts["val"] == 12
    for split in ("train", "val"):
        images = sorted(p.stem for p in (out / "images" / split).iterdir())
        labels = sorted(p.stem for p in (out / "labels" / split).iterdir())
        assert images == labels and images


def test_split_is_by_patient_and_recorded(converted):
    folds, k = load_folds(converted.out / "folds.json")
    assert k == 3
    with open(converted.out / "index.csv") as f:
        rows = list(csv.DictReader(f))
    patients = {"train": set(), "val": set()}
    for r in rows:
        patients[r["split"]].add(r["patient"])
        assert (r["split"] == "val") == (folds[r["patient"]] == 1)
        assert (int(r["height"]), int(r["width"])) == (192, 192)
    assert patients["train"] and patients["val"] and not patients["train"] & patients["val"]


def test_labels_rasterise_back_to_the_json_masks(converted, synth_root):
    samples = {f"{s.patient}__{s.image.stem}": load_sample(s) for s in scan(synth_root / "train").items}
    for label_file in (converted.out / "labels").rglob("*.txt"):
        sample = samples[label_file.stem]
        lines = label_file.read_text().splitlines()
        assert len(lines) == 30 and lines[-1].startswith(f"{REGION_CLASS_ID} ")
        for line, (cls, points) in zip(lines, sample.polygons):
            values = line.split()
            assert int(values[0]) == cls
            xy = np.array(values[1:], float).reshape(-1, 2)
            assert xy.min() >= 0 and xy.max() <= 1
            back = xy * [192, 192] - 0.5  # YOLO's normalised coordinates -> pixel coordinates
            a = polygon_mask(back, (192, 192)).astype(bool)
            b = polygon_mask(points, (192, 192)).astype(bool)
            assert (a & b).sum() / (a | b).sum() > 0.99


def test_ultralytics_reads_the_dataset_without_complaints(converted, tmp_path):
    from ultralytics.data.dataset import YOLODataset
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(converted.out / "data.yaml"), autodownload=False)
    assert data["nc"] == 30
    for split in ("train", "val"):
        ds = YOLODataset(img_path=data[split], data=data, task="segment", imgsz=128, augment=False)
        found, missing, empty, corrupt, total = ds.cache_labels(tmp_path / f"{split}.cache")["results"]
        assert (found, missing, empty, corrupt) == (total, 0, 0, 0)
        assert all(len(lbl["segments"]) == 30 for lbl in ds.labels)
        for lbl in ds.labels:  # the box ultralytics trains on for the region is the extent of its polygon
            region = lbl["cls"][:, 0] == REGION_CLASS_ID
            assert region.sum() == 1 and lbl["bboxes"][region].min() > 0


def test_imgsz_resizes_images_but_not_normalised_labels(synth_root, tmp_path, converted):
    result = convert_to_yolo(synth_root / "train", tmp_path / "small", folds=3, fold=1, imgsz=96, workers=2)
    some = next((result.out / "images" / "train").iterdir())
    assert cv2.imread(str(some)).shape[:2] == (96, 96)
    assert (result.out / "labels" / "train" / f"{some.stem}.txt").read_text() == \
        (converted.out / "labels" / "train" / f"{some.stem}.txt").read_text()


def test_existing_output_needs_overwrite_and_is_replaced_whole(synth_root, tmp_path):
    out = tmp_path / "y"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    with pytest.raises(DataError, match="--overwrite"):
        convert_to_yolo(synth_root / "train", out, folds=3)
    convert_to_yolo(synth_root / "train", out, folds=3, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "data.yaml").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y"]


def test_output_holding_the_data_is_refused_even_with_overwrite(train_copy):
    before = sorted(p.relative_to(train_copy) for p in train_copy.rglob("*"))
    for out in (train_copy, train_copy.parent, train_copy / "DCM", train_copy / "outputs_json" / "ID001"):
        with pytest.raises(DataError, match="holds or lies inside the data being converted"):
            convert_to_yolo(train_copy, out, folds=3, overwrite=True, workers=1)
    assert sorted(p.relative_to(train_copy) for p in train_copy.rglob("*")) == before


def test_empty_split_is_an_error(synth_root, tmp_path):
    with pytest.raises(DataError, match="6 patients cannot fill 7 folds"):
        convert_to_yolo(synth_root / "train", tmp_path / "z", folds=7)


def test_a_moved_set_still_trains_from_its_new_place(converted, tmp_path):
    from ultralytics.data.utils import check_det_dataset

    from stage1_detect.train import check_yolo_data

    moved = tmp_path / "elsewhere" / "set"
    shutil.copytree(converted.out, moved)
    resolved = check_det_dataset(str(check_yolo_data(moved)))  # what ultralytics' trainer reads
    assert Path(resolved["train"]) == moved / "images" / "train" and Path(resolved["val"]) == moved / "images" / "val"
    stale = moved / "data.yaml"  # an older data.yaml with a path that no longer exists
    stale.write_text(f"path: {tmp_path / 'gone'}\n" + stale.read_text())
    with pytest.raises(DataError, match="does not exist"):
        check_yolo_data(moved)


def _region_extent(label_file, hw):
    """The region line's polygon extent in pixel edges (x0, y0, x1, y1), and its vertex count."""
    line = label_file.read_text().splitlines()[-1].split()
    assert int(line[0]) == REGION_CLASS_ID
    xy = np.array(line[1:], float).reshape(-1, 2) * (hw[1], hw[0])
    return (*xy.min(0), *xy.max(0)), len(xy)


@pytest.mark.parametrize("shape, vertices, rule", [
    ("ellipse", ELLIPSE_VERTICES, RegionConfig()),
    ("box", 4, RegionConfig(margin=0.3, min_side=0.0, square=False)),  # another rule: the lines follow it
])
def test_region_class_is_the_region_rule_on_the_labels(synth_root, tmp_path, shape, vertices, rule):
    out = convert_to_yolo(synth_root / "train", tmp_path / "set", folds=3, fold=1, workers=2, region=rule,
                          region_shape=shape).out
    samples = {f"{s.patient}__{s.image.stem}": load_sample(s) for s in scan(synth_root / "train").items}
    assert len(samples) == 12
    for label_file in (out / "labels").rglob("*.txt"):
        sample = samples[label_file.stem]
        extent, n = _region_extent(label_file, sample.hw)
        rule_box = carpal_region(class_masks(sample.polygons, sample.hw), rule).box
        assert n == vertices
        np.testing.assert_allclose(extent, rule_box, atol=1e-3)  # 6 decimals of a 192 px side: 0.0002 px
    assert yaml.safe_load((out / "data.yaml").read_text())["cascade_region"]["margin"] == rule.margin


def test_without_the_region_the_set_has_the_29_bones_only(synth_root, tmp_path):
    out = convert_to_yolo(synth_root / "train", tmp_path / "set", folds=3, fold=1, workers=2, region=None).out
    doc = yaml.safe_load((out / "data.yaml").read_text())
    assert doc["nc"] == 29 and doc["names"] == dict(enumerate(CLASSES)) and "cascade_region" not in doc
    assert all(len(f.read_text().splitlines()) == 29 for f in (out / "labels").rglob("*.txt"))
    with pytest.raises(DataError, match="region shape"):
        convert_to_yolo(synth_root / "train", tmp_path / "other", folds=3, workers=2, region_shape="circle")
