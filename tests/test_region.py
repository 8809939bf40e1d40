from collections import Counter

import numpy as np
import pytest

from convert.carpal_region import (REGION_SOURCES, Region, RegionConfig, carpal_region, describe_sources,
                                   fit_region_prior, region_from_box)
from convert.classes import CLASS_INDEX, NUM_CLASSES
from stage1_detect.region import Detection, pick_region

H = W = 400


def _masks(carpal_box=(150, 180, 250, 260), with_carpals=8, with_neighbours=True):
    m = np.zeros((NUM_CLASSES, H, W), np.uint8)
    x0, y0, x1, y1 = carpal_box
    xs = np.linspace(x0, x1, 5).astype(int)
    for k, c in enumerate(range(19, 19 + with_carpals)):
        # 8 small blobs tiling the carpal box: two rows of four
        row, col = divmod(k, 4)
        yy = y0 if row == 0 else (y0 + y1) // 2
        m[c, yy:yy + (y1 - y0) // 2, xs[col]:xs[col + 1]] = 1
    if with_neighbours:
        for i in (3, 7, 11, 15, 19):  # metacarpals above
            m[CLASS_INDEX[f"finger-{i}"], 60:170, 140 + 20 * (i // 4):150 + 20 * (i // 4)] = 1
        m[CLASS_INDEX["Radius"], 270:400, 150:190] = 1
        m[CLASS_INDEX["Ulna"], 280:400, 210:240] = 1
    return m


def test_union_of_carpals_with_margin_square_and_clip():
    cfg = RegionConfig(margin=0.1, min_side=0.0, square=True, min_carpals=5)
    r = carpal_region(_masks(), cfg)
    assert r.source == "carpals"
    # carpal union box is x 150..250, y 180..260 (100 x 80); margin 10 px each side -> 120, square -> 120 x 120
    assert r.box == (140, 160, 260, 280)


def test_box_at_the_border_is_shifted_inside_and_stays_square():
    cfg = RegionConfig(margin=0.2, min_side=0.0, square=True)
    r = carpal_region(_masks(carpal_box=(320, 10, 399, 90)), cfg)
    x0, y0, x1, y1 = r.box
    assert (x1, y0) == (400, 0) and x1 - x0 == y1 - y0


def test_minimum_size():
    r = carpal_region(_masks(), RegionConfig(margin=0.0, min_side=0.5, square=False))
    assert r.box[2] - r.box[0] == 200 and r.box[3] - r.box[1] == 200


def test_too_few_carpals_fall_back_to_neighbours_then_prior():
    cfg = RegionConfig(min_carpals=5)
    r = carpal_region(_masks(with_carpals=2), cfg)
    assert r.source == "neighbours"
    cx, cy = (r.box[0] + r.box[2]) / 2, (r.box[1] + r.box[3]) / 2
    assert 150 < cx < 250 and 170 < cy < 290  # between the metacarpals and the forearm

    r = carpal_region(np.zeros((NUM_CLASSES, H, W), np.uint8), cfg)
    assert r.source == "prior"
    x0, y0, x1, y1 = cfg.prior.mean_box
    assert abs((r.box[0] + r.box[2]) / 2 - (x0 + x1) / 2 * W) <= 1


def test_prior_fitted_on_ground_truth_reproduces_the_region_from_neighbours():
    sets = [_masks(carpal_box=(150 + d, 180, 250 + d, 260)) for d in (-10, 0, 10)]
    prior = fit_region_prior(sets)
    cfg = RegionConfig(margin=0.1, min_side=0.0, prior=prior)
    full = carpal_region(sets[1], cfg)
    fallback = carpal_region(_masks(with_carpals=0), cfg)
    assert fallback.source == "neighbours"
    side = full.box[2] - full.box[0]
    centre = lambda b: np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2])  # noqa: E731
    # the fallback models the position along the forearm -> metacarpal axis, not across it: close, not exact
    assert np.linalg.norm(centre(full.box) - centre(fallback.box)) < 0.15 * side
    assert abs((fallback.box[2] - fallback.box[0]) - side) < 0.1 * side


def test_neighbour_centroid_is_the_mean_of_every_labelled_pixel():
    from convert.carpal_region import _centroid

    rng = np.random.default_rng(0)
    masks = np.zeros((29, 300, 200), np.uint8)
    masks[3, 20:90, 150:190] = rng.random((70, 40)) > 0.5
    masks[7, 250:299, 0:30] = 1
    ys, xs = np.nonzero(masks[3] | masks[7])
    np.testing.assert_array_equal(_centroid(masks, (3, 7, 11)), [xs.mean(), ys.mean()])
    assert _centroid(masks, (11,)) is None


def test_any_image_size_gets_a_region_of_at_least_one_pixel_inside_it():
    for hw in [(1, 1), (2, 3), (5, 7), (7, 5), (1, 40), (2048, 2048)]:
        x0, y0, x1, y1 = carpal_region(np.zeros((NUM_CLASSES, *hw), np.uint8)).box
        assert 0 <= x0 < x1 <= hw[1] and 0 <= y0 < y1 <= hw[0], hw


# --- the region stage 1 detects (issue 23): detection first, then the rule's chain ---


def test_a_box_of_the_rule_comes_back_unchanged_and_a_raw_box_is_finished_like_the_rule():
    cfg = RegionConfig()
    rule = carpal_region(_masks(), cfg)
    assert region_from_box(rule.box, (H, W), cfg, cfg.margin) == Region(rule.box, "detected")
    # a box reaching past the image is shifted inside, made square and kept at the minimum size
    x0, y0, x1, y1 = region_from_box((380, -20, 430, 10), (H, W), cfg, cfg.margin).box
    assert (x1, y0) == (W, 0) and x1 - x0 == y1 - y0 == round(cfg.min_side * H)


def test_a_detection_trained_with_another_margin_is_rescaled_to_the_rules():
    tight = (150, 180, 250, 280)  # the carpals' own box: 100 px square
    exported = region_from_box(tight, (H, W), RegionConfig(margin=0.0, min_side=0.0), 0.0)
    assert exported.box == tight
    detected = pick_region(_masks(), Detection((130, 160, 270, 300), 0.9), RegionConfig(margin=0.2, min_side=0.0),
                           0.5, box_margin=0.2)
    assert detected.box == (130, 160, 270, 300)  # same margin: as detected
    # trained on boxes with 20% margins (140 px), asked for 10%: 100 x 1.2 = 120 px about the same centre
    assert pick_region(_masks(), Detection((130, 160, 270, 300), 0.9), RegionConfig(margin=0.1, min_side=0.0),
                       0.5, box_margin=0.2).box == (140, 170, 260, 290)
    # region_grow widens a detection about its centre (room for the detector's offset): 140 x 1.25 = 175 px
    assert pick_region(_masks(), Detection((130, 160, 270, 300), 0.9), RegionConfig(margin=0.2, min_side=0.0),
                       0.5, box_margin=0.2, grow=1.25).box == (112, 142, 288, 318)


@pytest.mark.parametrize("detection, carpals, neighbours, source", [
    (Detection((100.0, 120.0, 260.0, 280.0), 0.8), 8, True, "detected"),
    (Detection((100.0, 120.0, 260.0, 280.0), 0.5), 0, False, "detected"),   # at the threshold counts
    (Detection((100.0, 120.0, 260.0, 280.0), 0.49), 8, True, "carpals"),   # not confident enough
    (None, 8, True, "carpals"),
    (Detection((100.0, 120.0, 260.0, 280.0), 0.1), 2, True, "neighbours"),
    (None, 0, False, "prior"),
])
def test_detection_first_then_carpals_neighbours_prior(detection, carpals, neighbours, source):
    cfg = RegionConfig()
    masks = _masks(with_carpals=carpals, with_neighbours=neighbours)
    region = pick_region(masks, detection, cfg, min_conf=0.5)
    assert region.source == source
    if source == "detected":
        assert region.box == (100, 120, 260, 280)  # square, above the minimum, inside: kept as it is
    else:
        assert region == carpal_region(masks, cfg)


def test_region_source_counts_name_every_source():
    text = describe_sources(Counter({"detected": 10, "neighbours": 2}))
    assert text == "detected 10, carpals 0, neighbours 2, prior 0"
    assert REGION_SOURCES[0] == "detected"
