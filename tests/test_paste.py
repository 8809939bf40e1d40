import re
import numpy as np
import pytest

from cascade.paste import PastePlan, paste
from convert.carpal_region import Region
from plumbing.errors import DataError


def _setup(box, hw=(50, 70)):
    stage1 = np.zeros((29, *hw), np.uint8)
    stage1[20] = 1          # Trapezoid everywhere in stage 1
    stage1[0, :5, :5] = 1   # finger-1, never pasted
    region = Region(box, "carpals")
    h, w = box[3] - box[1], box[2] - box[0]
    probs = np.zeros((29, h, w), np.float32)
    probs[20, : h // 2] = 0.45   # under the default threshold
    probs[20, h // 2:] = 0.9
    probs[0] = 1.0               # stage 2 says finger-1 everywhere: must be ignored, not in the plan
    return stage1, probs, region


@pytest.mark.parametrize("box", [(10, 5, 40, 35), (40, 20, 70, 50), (0, 0, 70, 50)])  # inside, corner, whole image
def test_paste_replaces_only_planned_classes_inside_the_region(box):
    stage1, probs, region = _setup(box)
    before = stage1.copy()
    out = paste(stage1, probs, region, list(range(29)), PastePlan((20,), {20: 0.5}))
    x0, y0, x1, y1 = box
    h = y1 - y0
    inside = np.zeros(stage1.shape[1:], bool)
    inside[y0:y1, x0:x1] = True
    assert (out[20][~inside] == 1).all()                     # stage 1 stays outside the region
    assert (out[20][y0:y0 + h // 2, x0:x1] == 0).all()       # 0.45 < threshold
    assert (out[20][y0 + h // 2:y1, x0:x1] == 1).all()
    np.testing.assert_array_equal(out[0], before[0])         # not in the plan
    np.testing.assert_array_equal(np.delete(out, 20, 0), np.delete(before, 20, 0))


def test_thresholds_are_per_class():
    stage1, probs, region = _setup((10, 5, 40, 35))
    out = paste(stage1, probs, region, list(range(29)), PastePlan((20,), {20: 0.4}))
    assert (out[20][5:35, 10:40] == 1).all()


def test_stage2_channels_may_be_a_subset_of_classes():
    stage1, probs, region = _setup((10, 5, 40, 35))
    sub = probs[[19, 20, 21]]     # stage 2 trained on three classes only
    out = paste(stage1, sub, region, [19, 20, 21], PastePlan((20,), {}))
    assert out[20][20:35, 10:40].all() and not out[20][5:20, 10:40].any()
    with pytest.raises(DataError, match="not one stage 2 was trained on"):
        paste(stage1, sub, region, [19, 20, 21], PastePlan((5,), {}))
    with pytest.raises(ValueError, match="does not match region"):
        paste(stage1, sub[:, 1:], region, [19, 20, 21], PastePlan((20,), {}))


def test_only_the_largest_blob_is_pasted_when_the_plan_says_so():
    stage1, probs, region = _setup((10, 5, 40, 35))
    probs[20] = 0.0
    probs[20, 2:12, 2:14] = 0.9    # the bone
    probs[20, 20:23, 20:23] = 0.9  # a stray blob, not touching it
    probs[20, 12, 14] = 0.9        # touches the bone only at a corner: 8-connected, part of it
    kept = paste(stage1.copy(), probs, region, list(range(29)), PastePlan((20,), {20: 0.5}, largest=(20,)))
    inside = kept[20, 5:35, 10:40]
    assert inside[2:12, 2:14].all() and inside[12, 14] and not inside[20:23, 20:23].any()
    assert inside.sum() == 10 * 12 + 1
    every = paste(stage1.copy(), probs, region, list(range(29)), PastePlan((20,), {20: 0.5}, largest=()))
    assert every[20, 5:35, 10:40].sum() == 10 * 12 + 1 + 9


def test_plan_file_round_trip_and_errors(tmp_path):
    for plan in (PastePlan((19, 26), {19: 0.4, 26: 0.5}), PastePlan((19, 26), {19: 0.4}, largest=(26,))):
        plan.save(tmp_path / "paste.json")
        assert PastePlan.load(tmp_path / "paste.json") == plan
    for name, text, words in (
            ("blob.json", '{"paste_classes": ["Pisiform"], "largest_component": ["Femur"]}', "unknown class name"),
            ("bad.json", '{"paste_classes": ["Femur"]}', "unknown class name(s) Femur"),
            ("high.json", '{"paste_classes": ["Pisiform"], "thresholds": {"Pisiform": 5}}', "thresholds must be probabilities within 0..1"),
            ("text.json", '{"paste_classes": ["Pisiform"], "thresholds": {"Pisiform": "x"}}', "thresholds must be probabilities within 0..1"),
            ("list.json", '["Pisiform"]', "not a paste file")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=re.escape(f"{name}: {words}")):
            PastePlan.load(tmp_path / name)
    plan = PastePlan.load(tmp_path / "paste.json")
    with pytest.raises(DataError, match=r"paste.json: pastes Pisiform, which stage 2 \(s2.pt\) was not trained on"):
        plan.check([19], "s2.pt")
    with pytest.raises(DataError, match="paste file not found"):
        PastePlan.load(tmp_path / "none.json")


def test_largest_blob_equals_labelling_the_whole_frame():
    import cv2

    from cascade.paste import largest_component

    rng = np.random.default_rng(0)
    for _ in range(200):
        mask = rng.random((rng.integers(1, 60), rng.integers(1, 60))) < rng.uniform(0.02, 0.6)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        expected = mask if count <= 2 else labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        np.testing.assert_array_equal(largest_component(mask), expected)


def test_malformed_plan_files_are_one_line_naming_the_file(tmp_path):
    """Wrong JSON types (a list for a name, a list for the thresholds) were TypeError / AttributeError
    tracebacks."""
    from click.testing import CliRunner

    from cascade.cli import main

    for name, text, words in (
            ("nested.json", '{"paste_classes": [["Lunate"]]}', "paste_classes: expected a list of class names"),
            ("tlist.json", '{"paste_classes": ["Lunate"], "thresholds": ["Lunate"]}',
             "thresholds: expected a mapping of class name to probability"),
            ("name.json", '{"paste_classes": "Lunate"}', "paste_classes: expected a list of class names"),
            ("blobs.json", '{"paste_classes": ["Lunate"], "largest_component": {"Lunate": 1}}',
             "largest_component: expected a list of class names"),
            ("num.json", '{"paste_classes": [7]}', "paste_classes: expected a list of class names"),
            ("null.json", 'null', "not a paste file")):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=re.escape(f"{name}: {words}")):
            PastePlan.load(tmp_path / name)
    images = tmp_path / "images"
    images.mkdir()
    import cv2
    import numpy as np

    cv2.imwrite(str(images / "a.png"), np.zeros((8, 8), np.uint8))
    result = CliRunner().invoke(main, ["predict", "--stage1", str(tmp_path / "s1.pt"), "--stage2",
                                       str(tmp_path / "s2.pt"), "--images", str(images), "--out",
                                       str(tmp_path / "out.csv"), "--paste-file", str(tmp_path / "tlist.json")])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.count("\n") == 1 and "tlist.json: thresholds" in result.output, result.output
