"""Wrist pose from the labels, and scores weighed to the test set's mix of bent and straight wrists."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cascade.paste import PastePlan
from cascade.scores import Scores
from cascade.tuning import SETTINGS, choose_plan, tune_thresholds
from convert.classes import CLASS_INDEX, NUM_CLASSES
from convert.masks import class_masks
from convert.wrist_pose import is_bent, long_axis_degrees, mix_poses, pose_weights, wrist_turn
from synthetic_hands import load_synth_config, make_hand


def hand_masks(bent: bool, seed: int, size: int = 256) -> np.ndarray:
    cfg = load_synth_config(overrides={"pose.bent_wrist_prob": float(bent)})
    return class_masks(make_hand(np.random.default_rng([seed, 0]), size, False, cfg), (size, size))


def test_long_axis_of_a_drawn_bar():
    mask = np.zeros((200, 200), np.uint8)
    cv2.ellipse(mask, (100, 100), (80, 10), 30, 0, 360, 1, -1)  # long axis 30 degrees below the x axis
    assert long_axis_degrees(mask) == pytest.approx(30, abs=0.5)
    assert np.isnan(long_axis_degrees(np.zeros((5, 5), np.uint8)))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_wrist_turn_ignores_a_whole_image_rotation(seed):
    masks = hand_masks(bent=True, seed=seed)
    rot = cv2.getRotationMatrix2D((128, 128), 35, 0.8)  # shrunk so the turned hand stays in the image
    turned = np.stack([cv2.warpAffine(m, rot, (256, 256), flags=cv2.INTER_NEAREST) for m in masks])
    assert wrist_turn(turned) == pytest.approx(wrist_turn(masks), abs=2.0)
    assert is_bent(turned) and is_bent(masks)


def test_straight_and_bent_hands_are_told_apart_and_a_missing_bone_is_not_bent():
    assert not any(is_bent(hand_masks(bent=False, seed=s)) for s in range(4))
    assert all(is_bent(hand_masks(bent=True, seed=s)) for s in range(4))
    masks = hand_masks(bent=True, seed=0)
    masks[CLASS_INDEX["Radius"]] = 0
    assert np.isnan(wrist_turn(masks)) and not is_bent(masks)


def test_weights_give_the_bent_images_their_share():
    bent = np.array([False, False, False, True])
    w = pose_weights(bent, 0.58)
    assert w.sum() == pytest.approx(1.0) and w[bent].sum() == pytest.approx(0.58)
    assert w[0] == w[1] == w[2]
    for uniform in (pose_weights(bent, None), pose_weights(np.zeros(4, bool), 0.58),
                    pose_weights(np.ones(4, bool), 0.58)):
        np.testing.assert_allclose(uniform, 0.25)


def test_pose_mix_of_sums_equals_the_weighted_image_mean():
    rng = np.random.default_rng(0)
    values, bent = rng.random((10, 3)), np.array([True, False] * 2 + [False] * 6)
    sums = np.stack([values[~bent].sum(0), values[bent].sum(0)])
    counts = np.array([(~bent).sum(), bent.sum()])
    for share in (0.58, 0.2, None):
        np.testing.assert_allclose(mix_poses(sums, counts, share),
                                   np.average(values, axis=0, weights=pose_weights(bent, share)))
    one_pose = np.stack([values.sum(0), np.zeros(3)])  # every image straight: nothing to weigh
    np.testing.assert_allclose(mix_poses(one_pose, [10, 0], 0.58), values.mean(0))


def scores_with(stage1: float, cascade_straight: float, cascade_bent: float, bent: list[bool]) -> Scores:
    """One carpal class (Trapezium) differs between the methods; every threshold scores the same."""
    c = CLASS_INDEX["Trapezium"]
    scores = Scores()
    for k, is_b in enumerate(bent):
        first, second = np.full(NUM_CLASSES, 0.9), np.full(NUM_CLASSES, 0.9)
        first[c], second[c] = stage1, cascade_bent if is_b else cascade_straight
        scores.images.append(f"im{k}")
        scores.patients.append(f"P{k}")
        scores.bent.append(is_b)
        scores.dice.setdefault("stage1", []).append(first)
        scores.dice.setdefault("cascade", []).append(second)
        scores.curves.setdefault(c, []).append(np.full(len(SETTINGS), second[c]))
    return scores


def test_pose_table_scores_each_pose_and_the_mix():
    scores = scores_with(0.5, 0.7, 0.2, bent=[False, False, False, True])
    table = scores.pose_table(0.58)
    assert table.loc["cascade", "straight_carpal"] == pytest.approx((7 * 0.9 + 0.7) / 8)
    assert table.loc["cascade", "bent_carpal"] == pytest.approx((7 * 0.9 + 0.2) / 8)
    assert table.loc["cascade", "test_mix_mean"] == pytest.approx(
        (0.58 * (28 * 0.9 + 0.2) + 0.42 * (28 * 0.9 + 0.7)) / NUM_CLASSES)
    assert table.loc["stage1", "bent_mean"] == table.loc["stage1", "straight_mean"]
    assert table.loc["cascade"].filter(like="test_mix").notna().all()
    assert scores_with(0.5, 0.7, 0.2, bent=[False] * 4).pose_table(0.58)["test_mix_mean"].isna().all()


def test_a_swap_that_hurts_bent_wrists_is_not_shipped_to_a_bent_test_set():
    c = CLASS_INDEX["Trapezium"]
    candidates = PastePlan((c,), {c: 0.5})
    # plain mean: (3 x 0.7 + 0.2) / 4 = 0.575 > 0.5; at 58% bent: 0.42 x 0.7 + 0.58 x 0.2 = 0.41 < 0.5
    assert choose_plan(scores_with(0.5, 0.7, 0.2, [False, False, False, True]), candidates, None).classes == (c,)
    assert choose_plan(scores_with(0.5, 0.7, 0.2, [False, False, False, True]), candidates, 0.58).classes == ()
    # a swap that helps both poses ships either way, with the tuned column added
    scores = scores_with(0.5, 0.7, 0.6, [False, False, False, True])
    assert choose_plan(scores, candidates, 0.58).classes == (c,)
    assert "cascade_tuned" in scores.dice


def test_thresholds_are_tuned_on_the_mix():
    scores = Scores()
    prefers = {False: np.array([0.8, 0.7, 0.5]), True: np.array([0.3, 0.6, 0.9])}  # straight: 0.3, bent: 0.7
    for k, is_b in enumerate([False, False, False, True]):
        scores.patients.append(f"P{k}")
        scores.bent.append(is_b)
        scores.curves.setdefault(19, []).append(prefers[is_b])
    assert tune_thresholds(scores, (0.3, 0.5, 0.7)).chosen == {19: 0.3}
    assert tune_thresholds(scores, (0.3, 0.5, 0.7), weights=scores.weights(0.58)).chosen == {19: 0.7}


def test_keeping_only_the_largest_blob_is_tuned_per_class_like_the_threshold():
    c = CLASS_INDEX["Trapezium"]
    scores = scores_with(0.5, 0.7, 0.6, [False, False, False, True])
    n = len(SETTINGS) // 2
    for curve in scores.curves[c]:
        curve[n + 3] += 0.1  # the largest blob at the fourth threshold scores best on every image
    plan = choose_plan(scores, PastePlan((c,), {c: 0.5}, largest=()), 0.58)
    assert plan.classes == plan.largest == (c,) and plan.thresholds == {c: SETTINGS[n + 3][0]}
