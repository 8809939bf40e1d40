"""Polygons that touch or cross the image edge: cut to the image within the tolerance, an error beyond it."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from cascade.cli import main
from convert.check import check_dataset
from convert.classes import CLASS_INDEX
from convert.dataset import EDGE_TOLERANCE, edge_tolerance_px, iter_samples, load_sample, scan
from convert.masks import class_masks, polygon_mask
from convert.submission import encode_masks, write_submission
from convert.yolo import clip_to_unit_square

SIZE = 192  # the synth_root images
TOLERANCE = edge_tolerance_px((SIZE, SIZE))  # 5.76 px


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _push(root, label, past: float, index: int = 0):
    """Move one polygon of the index-th image down so that its lowest point lies `past` px below the image."""
    item = scan(root).items[index]
    doc = json.loads(item.label.read_text())
    [ann] = [a for a in doc["annotations"] if a["label"] == label]
    pts = np.array(ann["points"], float)
    pts[:, 1] += SIZE + past - pts[:, 1].max()
    ann["points"] = pts.round().astype(int).tolist()
    item.label.write_text(json.dumps(doc))
    return item, pts.round()


def test_tolerance_is_a_share_of_the_side_with_a_floor():
    assert edge_tolerance_px((2048, 2048)) == pytest.approx(EDGE_TOLERANCE * 2048)
    assert edge_tolerance_px((32, 32)) == 2.0
    assert edge_tolerance_px((512, 700), 0.0) == 2.0


def test_mask_of_a_polygon_past_the_edge_is_the_polygon_cut_to_the_image():
    rng = np.random.default_rng(0)
    pad = 40
    for _ in range(200):
        pts = np.round(rng.uniform(-20, 84, (rng.integers(3, 12), 2))).astype(np.int32)
        cut = polygon_mask(pts + pad, (64 + 2 * pad, 64 + 2 * pad))[pad:pad + 64, pad:pad + 64]
        assert np.array_equal(polygon_mask(pts, (64, 64)), cut)
        half = polygon_mask(pts + pad, (64 + 2 * pad, 64 + 2 * pad), (32 + pad, 32 + pad))  # at half size
        assert np.array_equal(polygon_mask(pts, (64, 64), (32, 32)), half[pad // 2:pad // 2 + 32, pad // 2:pad // 2 + 32])


def test_within_the_tolerance_the_polygon_is_read_cut_and_counted(train_copy):
    item, pts = _push(train_copy, "Ulna", 5)  # 5 px past a 192-high image: tolerance 5.76
    sample = load_sample(item)
    [clip] = sample.clips
    assert clip.overshoot == 5 and "('Ulna')" in clip.what and clip.path == str(item.label)
    ulna = dict(sample.polygons)[CLASS_INDEX["Ulna"]]
    pad = 20
    big = class_masks([(0, pts.astype(np.int32) + pad)], (SIZE + 2 * pad,) * 2, num_classes=1)[0]
    assert np.array_equal(class_masks([(0, ulna)], sample.hw, num_classes=1)[0], big[pad:-pad, pad:-pad])


def test_a_point_on_the_far_border_is_no_warning(train_copy):
    item, _ = _push(train_copy, "Ulna", 0)  # y == h: the far side of the last row
    assert load_sample(item).clips == []


def test_beyond_the_tolerance_is_an_error_naming_file_annotation_and_extent(train_copy):
    item, _ = _push(train_copy, "Radius", 16)
    report = check_dataset(train_copy, workers=1)
    [problem] = report.problems
    assert problem.path == str(item.label)
    assert "('Radius'): points outside the 192x192 image" in problem.reason
    assert "y " in problem.reason and "..208" in problem.reason and "16 px past the edge" in problem.reason
    wider = check_dataset(train_copy, workers=1, edge_tolerance=0.1)  # 19.2 px: read and cut
    assert wider.ok and len(wider.clips) == 1


def test_check_data_lists_warnings_and_exits_0(train_copy):
    _push(train_copy, "Pisiform", 1, index=0)
    _push(train_copy, "Radius", 4, index=1)
    result = run("check-data", "--data", train_copy)
    assert result.exit_code == 0, result.output
    assert "problems: 0" in result.output
    assert "clipped 2 polygons in 2 files to the image (worst 4 px past the edge" in result.output
    assert "('Pisiform'): cut to the image (1 px past the edge" in result.output
    strict = run("check-data", "--data", train_copy, "--edge-tolerance", "0")  # 2 px floor: the 4 px is an error
    assert strict.exit_code == 1 and "('Radius'): points outside" in strict.output and "problems: 1" in strict.output


def test_convert_cuts_the_yolo_polygon_and_prints_one_summary_line(train_copy, tmp_path):
    item, _ = _push(train_copy, "Ulna", 5)
    result = run("convert", "--data", train_copy, "--out", tmp_path / "y", "--folds", "3")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("clipped")]
    assert lines == ["clipped 1 polygon in 1 file to the image (worst 5 px past the edge, in "
                     f"{item.label}; tolerance 5.76 px)"]
    [label] = (tmp_path / "y" / "labels").rglob(f"{item.patient}__{item.image.stem}.txt")
    ulna = [line for line in label.read_text().splitlines() if line.startswith(f"{CLASS_INDEX['Ulna']} ")]
    xy = np.array(ulna[0].split()[1:], float).reshape(-1, 2)
    assert xy.min() >= 0 and xy.max() <= 1 and (xy[:, 1] == 1.0).any()  # cut along the bottom edge


def test_evaluate_prints_the_summary_line(train_copy, tmp_path):
    _push(train_copy, "Ulna", 3)
    items = scan(train_copy).items[:2]
    truth = {s.item.name: encode_masks(class_masks(s.polygons, s.hw)) for s in iter_samples(items)}
    write_submission(tmp_path / "truth.csv", truth)
    result = run("evaluate", "--data", train_copy, "--submission", tmp_path / "truth.csv", "--out", tmp_path / "r")
    assert result.exit_code == 0, result.output
    assert "clipped 1 polygon in 1 file to the image (worst 3 px" in result.output


def test_train_stage2_reads_through_the_same_rule(train_copy, tmp_path):
    from stage2_segment.cache import EntryStore
    from stage2_segment.config import load_stage2_config
    from configs import CONFIG_DIR
    from plumbing.errors import DataError

    _push(train_copy, "Radius", 4)
    cfg = load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml")
    items = scan(train_copy).items
    for cache in (None, tmp_path / "cache"):
        clips = EntryStore(cfg.region, 1.2, cache, cfg.edge_tolerance).build(items, 1)
        assert [c.overshoot for c in clips] == [4]
    with pytest.raises(DataError, match="Radius.*points outside"):
        EntryStore(cfg.region, 1.2, None, 0.0).build(items, 1)


def test_unit_square_clip_cuts_edges_not_vertices():
    square = np.array([[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 1.5]])
    cut = clip_to_unit_square(square)
    assert sorted(map(tuple, cut.round(9))) == sorted([(0.5, 0.5), (1.0, 0.5), (1.0, 1.0), (0.5, 1.0)])
    tri = np.array([[0.2, 0.2], [0.8, 0.2], [0.5, 3.0]])  # clamping the tip would give a fatter triangle
    x = clip_to_unit_square(tri)
    area = 0.5 * abs(np.dot(x[:, 0], np.roll(x[:, 1], 1)) - np.dot(x[:, 1], np.roll(x[:, 0], 1)))
    assert area == pytest.approx(0.6 * 0.8 - 0.5 * 0.8 * (0.8 * 0.6 / 2.8), rel=1e-9)
    assert len(clip_to_unit_square(np.array([[2.0, 2.0], [3.0, 2.0], [2.5, 3.0]]))) == 0


def test_a_polygon_wholly_past_the_edge_is_an_error_even_within_the_tolerance(train_copy):
    _push(train_copy, "Pisiform", 16)  # a small bone: all of it below the image
    report = check_dataset(train_copy, workers=1, edge_tolerance=0.1)
    [problem] = report.problems
    assert "('Pisiform'): polygon has zero area in the image" in problem.reason
