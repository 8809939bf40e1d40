"""The synthetic data generator: layout, determinism, anatomy and the figures it promises to imitate."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from convert.classes import CLASS_INDEX, CLASSES, NUM_CLASSES
from convert.dataset import LABEL_DIR, load_sample, scan
from convert.masks import class_masks
from convert.wrist_pose import is_bent
from plumbing.errors import CascadeError, DataError
from synthetic_hands import SynthConfig, generate, load_synth_config, make_hand, render

UPRIGHT = {"pose.rotation_deg": 0, "pose.bent_wrist_prob": 0.0, "pose.shift_frac": 0.0}
NAME = re.compile(r"^image\d{13}(_[RL])?\.(png|json)$")


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def centroid(masks: np.ndarray, name: str) -> np.ndarray:
    ys, xs = np.nonzero(masks[CLASS_INDEX[name]])
    return np.array([xs.mean(), ys.mean()])


def hands(n: int, size: int, cfg: SynthConfig, seed: int = 0):
    """n (left?, polygons, masks) with alternating sides."""
    for i in range(n):
        polygons = make_hand(np.random.default_rng([seed, i]), size, bool(i % 2), cfg)
        yield bool(i % 2), polygons, class_masks(polygons, (size, size)).astype(bool)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("synth")
    return root, generate(root, patients=3, test_patients=1, size=128, seed=0)


def test_defaults_equal_the_yaml():
    assert load_synth_config() == SynthConfig()
    assert load_synth_config(overrides=["pose.bent_wrist_prob=0.6"]).pose.bent_wrist_prob == 0.6


def test_written_layout_loads_with_all_29_classes(dataset):
    root, summary = dataset
    assert (summary["train_images"], summary["test_images"]) == (6, 2)
    found = scan(root / "train")
    assert found.problems == []
    assert found.patients == ["ID001", "ID002", "ID003"]
    assert len(found.items) == 6
    for item in found.items:
        sample = load_sample(item)
        assert sample.image.shape == (128, 128) and sample.image.dtype == np.uint8
        assert sorted(c for c, _ in sample.polygons) == list(range(NUM_CLASSES))
        assert NAME.match(item.image.name)
        # Only ID001 carries the _R / _L suffix, as in the real data.
        assert ("_" in item.image.stem) == (item.patient == "ID001")


def test_json_has_the_real_shape(dataset):
    root, _ = dataset
    path = sorted((root / "train" / LABEL_DIR).rglob("*.json"))[0]
    doc = json.loads(path.read_text())
    assert list(doc) == ["annotations", "attributes", "file_id", "filename", "parent_path", "last_modifier_id",
                         "metadata", "last_workers"]
    assert doc["filename"] == path.stem + ".jpg"
    assert doc["metadata"]["width"] == doc["metadata"]["height"] == 3060
    assert [a["label"] for a in doc["annotations"]] == list(CLASSES)
    for ann in doc["annotations"]:
        assert set(ann) == {"id", "type", "attributes", "points", "label"} and ann["type"] == "poly_seg"
        assert all(isinstance(v, int) for xy in ann["points"] for v in xy)


def test_test_split_has_images_but_no_json(dataset):
    root, _ = dataset
    found = scan(root / "test", labelled=False)
    assert found.patients == ["ID004"]  # test IDs continue after train
    assert len(found.items) == 2 and all(NAME.match(i.image.name) and "_" not in i.image.stem for i in found.items)
    assert not (root / "test" / LABEL_DIR).exists()


@pytest.mark.parametrize("workers", [1, 3])
def test_same_seed_gives_identical_bytes(tmp_path, dataset, workers):
    root, _ = dataset
    generate(tmp_path, patients=3, test_patients=1, size=128, seed=0, workers=workers)
    assert files(tmp_path) == files(root)


def test_an_image_does_not_depend_on_how_many_are_made(tmp_path, dataset):
    root, _ = dataset
    generate(tmp_path, patients=1, size=128, seed=0)
    small = files(tmp_path)
    assert small and all(files(root)[k] == v for k, v in small.items())


def test_different_seeds_differ(tmp_path, dataset):
    root, _ = dataset
    generate(tmp_path, patients=1, size=128, seed=1)
    ours, theirs = files(tmp_path), files(root)
    assert not set(ours) & set(theirs)  # names derive from the seed too
    assert sorted(ours.values())[0] != sorted(theirs.values())[0]
    assert all(v not in theirs.values() for v in ours.values())


def test_polygons_valid_at_every_size():
    cfg = load_synth_config()
    for size in (128, 256, 2048):
        for left in (False, True):
            polygons = make_hand(np.random.default_rng(size), size, left, cfg)
            assert [c for c, _ in polygons] == list(range(NUM_CLASSES))
            for _, pts in polygons:
                assert pts.dtype == np.int32 and pts.ndim == 2 and pts.shape[1] == 2
                assert pts.min() >= 0 and pts.max() <= size - 1
                assert len(np.unique(pts, axis=0)) >= 3


def test_render_is_an_xray_of_the_masks():
    cfg = load_synth_config()
    polygons = make_hand(np.random.default_rng(3), 256, False, cfg)
    image = render(polygons, 256, np.random.default_rng(4), cfg)
    assert image.shape == (256, 256) and image.dtype == np.uint8
    assert np.array_equal(image, render(polygons, 256, np.random.default_rng(4), cfg))
    bone = class_masks(polygons, (256, 256)).any(0)
    # Bones are bright on a dark background.
    assert image[bone].mean() > image[~bone].mean() + 60
    assert np.percentile(image[~bone], 10) < 40


def test_left_and_right_hands_are_mirrored():
    cfg = load_synth_config()
    for left, _, masks in hands(8, 256, cfg):
        thumb, middle = centroid(masks, "finger-3"), centroid(masks, "finger-11")
        radius, ulna = centroid(masks, "Radius"), centroid(masks, "Ulna")
        # A right hand (thumb on the image's left) has the thumb and the radius on the left.
        assert (thumb[0] > middle[0]) == left
        assert (radius[0] > ulna[0]) == left


def test_bones_are_in_anatomical_order_on_an_upright_hand():
    cfg = load_synth_config(overrides=UPRIGHT)
    for left, _, masks in hands(4, 256, cfg):
        y = {name: centroid(masks, name)[1] for name in CLASSES}
        for tip, mc in (("finger-4", "finger-7"), ("finger-8", "finger-11"), ("finger-12", "finger-15"),
                        ("finger-16", "finger-19"), ("finger-1", "finger-3")):
            assert y[tip] < y[mc]
        carpal_y = np.mean([y[n] for n in CLASSES[19:27]])
        assert max(y[f"finger-{i}"] for i in (7, 11, 15, 19)) < carpal_y < y["Radius"]
        # Distal carpal row above the proximal row; metacarpals sit on their carpals.
        assert max(y[n] for n in ("Trapezoid", "Capitate", "Hamate")) < min(y[n] for n in ("Scaphoid", "Lunate"))
        x = {name: centroid(masks, name)[0] for name in CLASSES}
        side = -1 if left else 1  # +1: towards the little finger
        assert side * x["Scaphoid"] < side * x["Lunate"] < side * x["Triquetrum"]
        assert side * x["Trapezium"] < side * x["Trapezoid"] < side * x["Capitate"] < side * x["Hamate"]


def test_overlap_pairs_and_little_else():
    cfg = load_synth_config()
    ious = {("Triquetrum", "Pisiform"): [], ("Trapezium", "Trapezoid"): []}
    for _, _, masks in hands(8, 256, cfg, seed=5):
        flat = masks.reshape(NUM_CLASSES, -1)
        for a, b in ious:
            i, j = flat[CLASS_INDEX[a]], flat[CLASS_INDEX[b]]
            ious[(a, b)].append((i & j).sum() / (i | j).sum())
        two = (flat.sum(0) >= 2).sum()
        assert two / flat.shape[1] < 0.01  # real data: ~0.4% of pixels carry two labels
    assert all(v > 0 for pair in ious.values() for v in pair)
    assert 0.3 < np.mean(ious[("Triquetrum", "Pisiform")]) < 0.6  # real: 0.45
    assert 0.1 < np.mean(ious[("Trapezium", "Trapezoid")]) < 0.3  # real: 0.19


def test_relative_sizes():
    cfg = load_synth_config()
    areas = np.mean([m.reshape(NUM_CLASSES, -1).sum(1) for _, _, m in hands(6, 256, cfg)], axis=0)
    # Real (px at 2048): Radius ~75,000, Pisiform ~4,300, finger-16 ~3,900; these two are the smallest.
    assert 10 < areas[CLASS_INDEX["Radius"]] / areas[CLASS_INDEX["Pisiform"]] < 30
    assert set(np.argsort(areas)[:3]) >= {CLASS_INDEX["finger-16"]}
    scale = (2048 / 256) ** 2
    assert 50_000 < areas[CLASS_INDEX["Radius"]] * scale < 100_000


def test_bent_wrist_share_follows_the_config():
    def bent(cfg):
        return [is_bent(masks) for _, _, masks in hands(6, 256, cfg, seed=2)]

    assert not any(bent(load_synth_config(overrides={"pose.bent_wrist_prob": 0.0})))
    assert all(bent(load_synth_config(overrides={"pose.bent_wrist_prob": 1.0})))


def test_a_split_gets_exactly_its_share_of_bent_wrists_and_keeps_the_rest_of_each_hand(tmp_path, dataset):
    root, _ = dataset
    summary = generate(tmp_path / "shifted", patients=3, test_patients=4, size=128, seed=0, bent_share=1 / 6,
                       test_bent_share=0.625, test_labels=True)
    train = [is_bent(class_masks(s.polygons, s.hw)) for s in map(load_sample, scan(tmp_path / "shifted" / "train").items)]
    test_scan = scan(tmp_path / "shifted" / "test", labels=summary["test_labels"])
    assert test_scan.problems == [] and len(test_scan.items) == 8  # every test image has its labels, apart
    test = [is_bent(class_masks(s.polygons, s.hw)) for s in map(load_sample, test_scan.items)]
    assert (sum(train), sum(test)) == (1, 5)  # round(share * images), not a per-image draw
    assert not (tmp_path / "shifted" / "test" / LABEL_DIR).exists()  # test/ stays as the real one: images only
    # the default (no share) is the per-image draw of before, byte for byte, and no test labels
    assert files(root) == files(generate(tmp_path / "again", patients=3, test_patients=1, size=128, seed=0)
                                 and tmp_path / "again")
    # forcing the pose leaves the image streams alone: a hand whose draw agreed is byte-identical
    same = generate(tmp_path / "forced", patients=3, test_patients=1, size=128, seed=0, bent_share=0.0)
    straight = [s.item for s in map(load_sample, scan(root / "train").items)
                if not is_bent(class_masks(s.polygons, s.hw))]
    assert straight and all((tmp_path / "forced" / i.image.relative_to(root)).read_bytes() == i.image.read_bytes()
                            for i in straight)


def test_bent_shares_are_checked(tmp_path):
    with pytest.raises(CascadeError, match="test_bent_share"):
        generate(tmp_path / "x", patients=1, test_patients=1, size=128, test_bent_share=1.5)


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(CascadeError):
        generate(tmp_path, patients=1, size=64)
    with pytest.raises(CascadeError):
        generate(tmp_path, patients=1, seed=-1)
    with pytest.raises(CascadeError):
        generate(tmp_path, patients=-1)


def test_a_failed_run_leaves_nothing_and_names_the_image(tmp_path):
    cfg = load_synth_config(overrides=["pose.scale=[1.2, 1.6]", "pose.max_tries=1"])  # hands too big to fit
    with pytest.raises(DataError) as err:
        generate(tmp_path / "out", patients=3, size=128, cfg=cfg, workers=2)
    assert re.search(r"out/train/DCM/ID\d{3}/image\d{13}(_[RL])?\.png$", err.value.path), err.value
    assert "fell outside" in err.value.reason and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither out nor its temporary sibling


def test_a_non_empty_folder_is_refused_and_kept(tmp_path):
    root = tmp_path / "set"
    generate(root, patients=1, size=128, seed=0)
    before = files(root)
    with pytest.raises(DataError, match="not empty"):
        generate(root, patients=2, size=256, seed=1)
    assert files(root) == before
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        generate(tmp_path / "file", patients=1, size=128)
    generate(root, patients=1, size=128, seed=1, overwrite=True)  # replaces the whole set
    assert len(files(root)) == 4 and not set(files(root)) & set(before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "set"]  # no temporary folder left
