import numpy as np

from convert.masks import class_masks, polygon_mask


def test_native_polygon_covers_its_vertices_and_inside():
    square = np.array([[2, 3], [6, 3], [6, 8], [2, 8]], np.int32)
    mask = polygon_mask(square, (12, 10))
    assert mask.dtype == np.uint8 and mask.shape == (12, 10)
    assert mask.sum() == 5 * 6
    assert mask[3, 2] == mask[8, 6] == 1 and mask[2, 2] == 0


def test_overlapping_classes_keep_both_labels():
    a = np.array([[0, 0], [9, 0], [9, 9], [0, 9]])
    b = np.array([[5, 5], [14, 5], [14, 14], [5, 14]])
    masks = class_masks([(20, a), (21, b)], (16, 16))
    assert masks.shape == (29, 16, 16)
    both = masks[20] & masks[21]
    assert both.sum() == 25  # the 5 x 5 overlap belongs to both classes
    assert masks.sum(axis=(1, 2))[[20, 21]].tolist() == [100, 100]


def test_rescaled_mask_matches_downsampled_native_mask():
    t = np.linspace(0, 2 * np.pi, 60, endpoint=False)
    pts = np.stack([200 + 120 * np.cos(t), 220 + 80 * np.sin(t)], 1).round().astype(np.int32)
    native = polygon_mask(pts, (512, 512))
    small = polygon_mask(pts, (512, 512), (128, 128))
    pooled = native.reshape(128, 4, 128, 4).mean(axis=(1, 3)) >= 0.5
    iou = (small.astype(bool) & pooled).sum() / (small.astype(bool) | pooled).sum()
    assert iou > 0.95


def test_dice_per_class_and_region_containment():
    from convert.dice import dice_per_class, region_contains
    from convert.carpal_region import Region

    truth = np.zeros((3, 8, 8), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, :4, :4] = 1
    pred[0, :4, :2] = 1       # half of class 0: Dice = 2*8 / (8 + 16)
    pred[1, 0, 0] = 1         # class 1 predicted but absent: 0
    d = dice_per_class(pred, truth)  # class 2 empty in both: 1
    np.testing.assert_allclose(d, [2 * 8 / 24, 0.0, 1.0])
    assert region_contains(Region((0, 0, 4, 4), "carpals"), truth, [0])
    assert not region_contains(Region((0, 0, 3, 4), "carpals"), truth, [0])


def test_dice_counted_in_boxes_equals_dice_over_the_whole_image():
    from convert.dice import dice_per_class

    rng = np.random.default_rng(0)
    for _ in range(200):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        pred = (rng.random((4, h, w)) < rng.uniform(0, 0.3)).astype(np.uint8)
        truth = rng.random((4, h, w)) < rng.uniform(0, 0.3)
        p, t = pred.reshape(4, -1).astype(bool), truth.reshape(4, -1)
        total = p.sum(1) + t.sum(1)
        expected = np.where(total > 0, 2 * (p & t).sum(1) / np.maximum(total, 1), 1.0)
        np.testing.assert_array_equal(dice_per_class(pred, truth), expected)
