"""Stage 2: crop geometry, the crop cache, training on the CPU, checkpoints, resuming, inference and the CLI.

Everything is tiny (64 px inputs, a slim decoder, one epoch) so the file runs in well under a minute on 2 cores.
"""

import csv
import os
import socket
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cascade.cli import main
from convert.carpal_region import Region, carpal_region
from convert.classes import CARPAL_INDICES, CARPALS, CLASS_INDEX, CLASSES
from convert.dataset import load_sample, scan
from convert.masks import class_masks
from convert.wrist_pose import is_bent
from plumbing.errors import CascadeError
from stage2_segment.cache import EntryStore, make_entry
from stage2_segment.checkpoint import load_checkpoint
from stage2_segment.config import load_stage2_config
from stage2_segment.data import TrainCrops, crop_store_for, unpack_labels, val_crop
from stage2_segment.geometry import (MAX_LINEAR_SHRINK, crop_matrix, crop_padded, footprint, jitter_box, paste,
                                     resize_image, resize_masks, to_native, warp, warp_image)
from stage2_segment.model import Preprocess
from stage2_segment.predict import Stage2Model, predict_crops
from stage2_segment.train import lr_factor, train_stage2
from stage2_segment.validation import ValDice

CPU_CONFIG = "configs/stage2_cpu.yaml"
TINY = ["epochs=1", "input_size=64", "batch=4", "workers=0", "device=cpu", "folds=3",
        "decoder_channels=[16,16,16,16,16]"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors gain nothing from a second thread, and on a busy 2-core machine two threads spin-wait."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(tmp, *more):
    root = os.path.dirname(os.path.dirname(__file__))
    return load_stage2_config(os.path.join(root, CPU_CONFIG),
                              TINY + [f"out={tmp / 'runs'}", f"cache_dir={tmp / 'cache'}", *more])


def _iou(a, b):
    a, b = a.astype(bool), b.astype(bool)
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.fixture(scope="module")
def trained(synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("stage2")
    cfg = _cfg(tmp)
    logs = []
    run = train_stage2(synth_root / "train", cfg, log=logs.append)
    return tmp, cfg, run, logs


# --- configuration -------------------------------------------------------------------------------------------

def test_default_config_trains_every_class_and_pastes_the_carpals():
    cfg = load_stage2_config()
    assert cfg.train_classes == list(CLASSES) and cfg.paste_classes == list(CARPALS)
    assert cfg.input_size == 1024 and cfg.encoder_weights is None and cfg.device is None
    cfg = load_stage2_config(None, ["jitter.shift=0.1", "lr=1e-3", "class_thresholds={Pisiform: 0.4}"])
    assert cfg.jitter.shift == 0.1 and cfg.lr == 0.001
    assert cfg.thresholds()[CLASSES.index("Pisiform")] == 0.4 and cfg.thresholds()[0] == 0.5


@pytest.mark.parametrize("override, words", [
    ("train_classes=[Lunate, Capitate]", "subset"),
    ("train_classes=[Lunate, Banana]", "Banana"),
    ("input_size=100", "multiple of 32"),
    ("scheduler=linear", "scheduler"),
    ("nonsense=1", "unknown key"),
    ("bent_share=1.5", "bent_share"),
    ("bent_share=abc", "not a number"),
])
def test_bad_settings_are_one_line_errors(override, words):
    with pytest.raises(CascadeError) as err:
        load_stage2_config(None, [override])
    assert words in str(err.value) and "\n" not in str(err.value)


def test_schedules_warm_up_then_decay():
    cos = [lr_factor("cosine", s, 100, 10, 0.01) for s in range(100)]
    one = [lr_factor("onecycle", s, 100, 10, 0.01) for s in range(100)]
    assert cos[0] < cos[9] == pytest.approx(1.0) and cos[-1] < 0.02
    assert one[0] == pytest.approx(1 / 25, rel=0.1) and max(one) == pytest.approx(1.0) and one[-1] < 0.02


# --- geometry: crop, resize, back, paste ---------------------------------------------------------------------

def _blob(hw, centre, radius):
    yy, xx = np.mgrid[:hw[0], :hw[1]]
    return ((yy - centre[1]) ** 2 + (xx - centre[0]) ** 2 <= radius ** 2).astype(np.uint8)


def test_padded_crop_at_the_border():
    image = np.arange(1, 101, dtype=np.uint8).reshape(10, 10)
    out = crop_padded(image, (-2, 7, 4, 13))
    assert out.shape == (6, 6)
    assert (out[:, :2] == 0).all() and (out[3:] == 0).all()  # left of and below the image
    np.testing.assert_array_equal(out[:3, 2:], image[7:10, 0:4])


@pytest.mark.parametrize("box", [(40, 50, 140, 150),     # inside
                                 (-30, 120, 90, 240),     # leaves the image at the left and bottom
                                 (150, -20, 230, 60)])    # right and top
def test_crop_resize_back_and_paste_lands_on_the_same_pixels(box):
    hw = (200, 210)
    truth = np.stack([_blob(hw, (x, y), 22) for x, y in ((80, 100), (20, 180), (195, 10))])
    crop = crop_padded(truth, box)                                        # native crop, zero outside the image
    small = resize_masks(np.ascontiguousarray(crop.transpose(1, 2, 0)), 64)  # to the network's input
    back = to_native(torch.from_numpy(small.transpose(2, 0, 1)).float(), crop.shape[1:]).numpy()
    canvas = np.zeros((3, *hw), np.float32)
    paste(canvas, back, box)
    inside = np.zeros(hw, bool)
    inside[max(box[1], 0):box[3], max(box[0], 0):box[2]] = True
    for c in range(3):
        want = truth[c] * inside
        if want.sum() > 200:
            assert _iou(canvas[c] > 0.5, want) > 0.9
            ys, xs = np.nonzero(canvas[c] > 0.5)
            wy, wx = np.nonzero(want)
            assert abs(ys.mean() - wy.mean()) < 0.75 and abs(xs.mean() - wx.mean()) < 0.75  # no shift


def test_jittered_boxes_stay_near_the_region():
    rng = np.random.default_rng(0)
    boxes = [jitter_box((100, 100, 200, 200), rng, 0.1, (0.8, 1.2)) for _ in range(200)]
    sides = np.array([b[2] - b[0] for b in boxes])
    centres = np.array([((b[0] + b[2]) / 2, (b[1] + b[3]) / 2) for b in boxes])
    assert 79 <= sides.min() < 90 and 110 < sides.max() <= 121
    assert np.abs(centres - 150).max() <= 10.5 and centres.std() > 3
    assert all(b[2] - b[0] == b[3] - b[1] for b in boxes)  # a square stays square


@pytest.mark.parametrize("box", [(40, 50, 104, 114), (-20, 150, 44, 214)])  # inside; across the left / bottom edge
def test_one_warp_is_the_crop_flipped_and_turned(box):
    """Input-sized boxes: the warp reads whole pixels, so flips and quarter turns are exact array operations."""
    hw = (200, 210)
    image = np.random.default_rng(0).integers(1, 256, hw, dtype=np.uint8)
    masks = np.random.default_rng(1).integers(0, 256, hw + (5,), dtype=np.uint8)  # more channels than cv2's 4
    crop, crop_m = crop_padded(image, box), crop_padded(masks.transpose(2, 0, 1), box).transpose(1, 2, 0)
    for angle, flip, want, want_m in [(0, False, crop, crop_m), (0, True, crop[:, ::-1], crop_m[:, ::-1]),
                                      (90, False, np.rot90(crop), np.rot90(crop_m)),
                                      (180, True, crop[::-1], crop_m[::-1])]:
        m = crop_matrix(box, 64, angle, flip)
        np.testing.assert_array_equal(warp_image(image, (0, 0), m, 64), want)
        reads = footprint(m, 64)
        cut = crop_padded(masks.transpose(2, 0, 1), reads).transpose(1, 2, 0)
        np.testing.assert_array_equal(warp(np.ascontiguousarray(cut), reads[:2], m, 64, cv2.INTER_NEAREST), want_m)
    # a cut of the image with its origin reads the same pixels as the whole image
    x0, y0 = max(box[0], 0), max(box[1], 0)
    np.testing.assert_array_equal(warp_image(image[y0:, x0:], (x0, y0), crop_matrix(box, 64), 64), crop)


@pytest.mark.parametrize("side", [96, 64 * MAX_LINEAR_SHRINK + 32])  # enlarged / shrunk; shrunk past the limit
def test_one_warp_resizes_like_the_resize_of_the_crop(side):
    box = (10, 20, 10 + int(side), 20 + int(side))
    image = cv2.GaussianBlur(np.random.default_rng(2).integers(0, 256, (300, 300), dtype=np.uint8), (0, 0), 3)
    got = warp_image(image, (0, 0), crop_matrix(box, 64), 64).astype(int)
    want = resize_image(crop_padded(image, box), 64).astype(int)
    # the same pixel centres: fixed-point rounding apart, and past the limit area averaging in two steps
    assert np.abs(got - want).mean() < 1 and np.abs(got - want).max() <= 3


# --- the crop cache ------------------------------------------------------------------------------------------

def test_cache_entry_holds_exactly_the_native_masks(train_copy, tmp_path):
    item = scan(train_copy).items[0]
    sample = load_sample(item)
    truth = class_masks(sample.polygons, sample.hw)
    cfg = _cfg(tmp_path)
    region = carpal_region(truth, cfg.region)
    # reach 12: the kept cut spans the whole 192 px image, so a box over the image border can be checked too
    store = EntryStore(cfg.region, 12.0, tmp_path / "cache")
    entry = store.get(item)
    assert entry.region == region.box and entry.image.shape == sample.hw
    assert make_entry(sample, cfg.region, 1.5).image.size < entry.image.size  # normally only the region's reach
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1
    again = store.get(item)  # from the file now
    np.testing.assert_array_equal(again.image, entry.image)
    assert again.bent == entry.bent == is_bent(truth)  # the pose of the whole hand, not of the kept cut
    rng = np.random.default_rng(1)
    for box in [region.box, jitter_box(region.box, rng, 0.1, (0.9, 1.2)), (-10, -10, 40, 40)]:
        np.testing.assert_array_equal(again.crop_masks(range(29), box), crop_padded(truth, box))
        packed = again.crop_masks(list(range(29)), box, packed=True)
        assert packed.shape[2] == 4  # 29 classes, 8 to a byte
        np.testing.assert_array_equal(np.unpackbits(packed, axis=-1, count=29),
                                      crop_padded(truth, box).transpose(1, 2, 0))
        np.testing.assert_array_equal(again.crop_image(box), crop_padded(sample.image, box))
    # a changed file or region rule is a new key, never a stale hit
    old = store.path(item)
    os.utime(item.label, ns=(1, 1))
    assert store.path(item) != old
    assert EntryStore(replace(cfg.region, margin=0.2), 12.0, tmp_path / "cache").path(item) != store.path(item)


def test_training_crop_moves_image_and_labels_together(synth_root, tmp_path):
    """The image is made of one label mask, so after jitter, rotation and flips it must still cover it."""
    item = scan(synth_root / "train").items[1]
    sample = load_sample(item)
    cfg = _cfg(tmp_path, "augment.rotate=30", "augment.rotate_prob=1.0", "augment.hflip=0.5",
               "augment.brightness_contrast_prob=0", "augment.clahe=false", "normalize.mean=0", "normalize.std=1",
               "jitter.shift=0.15")
    entry = make_entry(sample, cfg.region, 3.0)
    entry.image = (crop_padded(class_masks(sample.polygons, sample.hw)[CLASS_INDEX["Capitate"]], (
        entry.origin[0], entry.origin[1], entry.origin[0] + entry.image.shape[1],
        entry.origin[1] + entry.image.shape[0])) * 255).astype(np.uint8)

    class Fixed:
        def get(self, _):
            return entry

    data = TrainCrops([item] * 8, Fixed(), cfg)
    torch.manual_seed(0)
    for i in range(8):
        x, packed = data[i]
        # labels travel bit-packed (4 bytes a pixel for 29 classes) and are unpacked on the device
        assert x.shape == (1, 64, 64) and x.dtype == torch.float32 and packed.shape == (64, 64, 4)
        y = unpack_labels(packed[None], 29)[0].numpy()
        assert y.shape == (29, 64, 64)
        assert _iou(x[0].numpy() > 0.5, y[CLASS_INDEX["Capitate"]]) > 0.85
        assert _iou(y[CLASS_INDEX["Capitate"]], y[CLASS_INDEX["Lunate"]]) < 0.2


def test_training_crops_repeat_with_the_seed(synth_root, tmp_path):
    cfg = _cfg(tmp_path, "augment.rotate_prob=1.0", "augment.brightness_contrast_prob=1.0")
    items = scan(synth_root / "train").items[:2]
    data = TrainCrops(items, crop_store_for(cfg, None), cfg)

    def draw(seed):
        torch.manual_seed(seed)
        return [t.numpy() for i in range(2) for t in data[i]]

    first, again, other = draw(0), draw(0), draw(1)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("classes", [1, 8, 9, 29])
def test_unpacked_labels_are_numpys_unpackbits(classes):
    bits = np.random.default_rng(classes).integers(0, 2, (3, 5, 7, classes), dtype=np.uint8)
    packed = torch.from_numpy(np.packbits(bits, axis=-1))
    np.testing.assert_array_equal(unpack_labels(packed, classes).numpy(), bits.transpose(0, 3, 1, 2))


def test_validation_crop_is_the_unjittered_region_at_native_size(synth_root):
    sample = load_sample(scan(synth_root / "train").items[2])
    truth = class_masks(sample.polygons, sample.hw)
    cfg = load_stage2_config()
    entry = make_entry(sample, cfg.region, 1.5)
    image, labels = val_crop(entry, list(range(29)))
    x0, y0, x1, y1 = carpal_region(truth, cfg.region).box
    assert image.shape == (y1 - y0, x1 - x0)
    np.testing.assert_array_equal(labels, truth[:, y0:y1, x0:x1])
    assert all(labels[c].sum() == truth[c].sum() for c in CARPAL_INDICES)  # every carpal is inside


# --- training, checkpoints, resume ---------------------------------------------------------------------------

def test_training_writes_checkpoints_that_load_weights_only(trained):
    tmp, cfg, run, logs = trained
    assert run.best.name == "best.pt" and run.last.is_file()
    for name in ("results.csv", "results.png", "config.yaml", "folds.json"):
        assert (run.run_dir / name).is_file()
    assert 0 <= run.best_score <= 1 and any(line.startswith("epoch 1/1") and "val carpal Dice" in line for line in logs)
    ckpt = torch.load(run.last, map_location="cpu", weights_only=True)
    for key in ("state_dict", "train_classes", "paste_classes", "input_size", "in_channels", "region", "encoder",
                "preprocess", "thresholds", "epoch", "optimizer", "scheduler", "scaler", "best_score"):
        assert key in ckpt
    assert ckpt["train_classes"] == list(CLASSES) and ckpt["paste_classes"] == list(CARPALS)
    assert ckpt["epoch"] == 1 and ckpt["input_size"] == 64 and ckpt["in_channels"] == 1
    best = torch.load(run.best, map_location="cpu", weights_only=True)
    assert "optimizer" not in best and best["region"]["margin"] == cfg.region.margin


def test_best_checkpoint_is_chosen_on_the_test_mix_of_wrist_poses(trained):
    tmp, cfg, run, logs = trained
    rows = list(csv.DictReader(open(run.run_dir / "results.csv")))
    best = torch.load(run.best, map_location="cpu", weights_only=True)
    assert best["best_score"] == pytest.approx(max(float(r["val_carpal_dice"]) for r in rows))
    for r in rows:
        straight, bent, mixed = (float(r[k]) for k in ("val_carpal_straight", "val_carpal_bent", "val_carpal_dice"))
        if 0 < int(r["val_bent_images"]) < 4:  # 4 validation images
            assert mixed == pytest.approx((1 - cfg.bent_share) * straight + cfg.bent_share * bent)
        else:
            assert mixed == pytest.approx(bent if int(r["val_bent_images"]) else straight)
    # one bent image of four, weighed to 58%: a model better on bent wrists wins on the mix, not on the plain mean
    val = ValDice(np.array([[0.9 * 3], [0.6]]), np.array([3, 1]))
    other = ValDice(np.array([[0.8 * 3], [0.8]]), np.array([3, 1]))
    assert val.mean(None)[0] > other.mean(None)[0] and val.mean(0.58)[0] < other.mean(0.58)[0]
    assert np.isnan(ValDice(np.ones((2, 3)), np.array([2, 0])).pose(True)).all()


def test_resume_continues_after_the_saved_epoch(trained, synth_root):
    tmp, cfg, run, _ = trained
    logs = []
    again = train_stage2(synth_root / "train", replace(cfg, epochs=2), log=logs.append)
    assert any("resuming" in line and "after epoch 1" in line for line in logs)
    assert [row["epoch"] for row in again.history] == [2]
    assert load_checkpoint(again.last)["epoch"] == 2
    # a finished run resumed again has nothing left to do
    assert train_stage2(synth_root / "train", replace(cfg, epochs=2), log=lambda _: None).history == []


def test_resuming_with_other_classes_is_refused(trained, synth_root):
    tmp, cfg, run, _ = trained
    other = replace(cfg, train_classes=list(CARPALS), paste_classes=list(CARPALS))
    with pytest.raises(CascadeError) as err:
        train_stage2(synth_root / "train", other)
    assert "last.pt" in str(err.value) and "train_classes" in str(err.value) and "\n" not in str(err.value)
    assert "finger-1" in (run.run_dir / "config.yaml").read_text()  # refused before anything was written
    before = (run.run_dir / "last.pt").read_bytes()
    for changed in (replace(cfg, fold=1), replace(cfg, seed=5)):  # other validation patients: they would leak
        with pytest.raises(CascadeError, match="other images or another validation fold"):
            train_stage2(synth_root / "train", replace(changed, epochs=3), log=lambda _: None)
    assert (run.run_dir / "last.pt").read_bytes() == before


def test_mismatched_or_foreign_files_are_one_line_errors(trained, tmp_path):
    _, _, run, _ = trained
    not_ckpt = tmp_path / "notes.pt"
    not_ckpt.write_text("hello")
    ckpt = torch.load(run.best, map_location="cpu", weights_only=True)
    lacking = tmp_path / "lacking.pt"
    torch.save({k: v for k, v in ckpt.items() if k != "region"}, lacking)
    renamed = tmp_path / "renamed.pt"
    torch.save({**ckpt, "train_classes": ["Bone"] + ckpt["train_classes"][1:]}, renamed)
    fewer = tmp_path / "fewer.pt"
    torch.save({**ckpt, "train_classes": list(CARPALS), "thresholds": [0.5] * 8}, fewer)
    foreign = tmp_path / "pickled.pt"
    torch.save({"model": torch.nn.Linear(2, 2)}, foreign)
    for path, words in [(tmp_path / "none.pt", "not found"), (not_ckpt, "not a stage 2 checkpoint"),
                        (lacking, "lacks region"), (renamed, "unknown class"), (fewer, "do not fit"),
                        (foreign, "not a stage 2 checkpoint")]:
        with pytest.raises(CascadeError) as err:
            Stage2Model(path, device="cpu")
        assert str(path) in str(err.value) and words in str(err.value) and "\n" not in str(err.value)


# --- inference -----------------------------------------------------------------------------------------------

def test_predict_gives_native_size_probabilities_for_any_image(trained, synth_root):
    _, _, run, _ = trained
    model = Stage2Model(run.best, device="cpu")
    assert model.train_classes == list(range(29)) and model.paste_classes == list(CARPAL_INDICES)
    assert model.thresholds.shape == (29,) and model.region_cfg.margin == 0.12
    image = load_sample(scan(synth_root / "train").items[0]).image
    regions = [Region((50, 60, 130, 140), "carpals"), Region((150, -10, 230, 70), "prior"),
               Region((10, 20, 74, 100), "neighbours")]
    images = [image, image.astype(np.uint16) * 257, np.dstack([image] * 3)]
    for tta in (False, True):
        outs = model.predict(images, regions, tta_hflip=tta, batch=2)
        assert [o.shape for o in outs] == [(29, 80, 80), (29, 80, 80), (29, 80, 64)]
        for o in outs:
            assert o.dtype == np.float32 and 0 <= o.min() and o.max() <= 1
    np.testing.assert_allclose(outs[0], model.predict([image], regions[:1], tta_hflip=True)[0], atol=1e-5)
    assert model.predict([], []) == []


class _Echo(torch.nn.Module):
    """A stand-in network whose logits are its input: channel c says 'bone' wherever the image is bright."""

    def __init__(self, classes):
        super().__init__()
        self.classes = classes

    def forward(self, x):
        return (x * 40 - 20).repeat(1, self.classes, 1, 1)


def test_predict_then_paste_puts_a_known_mask_back_in_place(trained):
    _, _, run, _ = trained
    model = Stage2Model(run.best, device="cpu")
    model.net = _Echo(len(model.train_classes))
    model.preprocess = Preprocess(0.0, 1.0, False, 2.0, 8)  # the echo sees the grey value on [0, 1]
    hw = (180, 200)
    mask = _blob(hw, (40, 150), 25)
    region = Region((-20, 90, 90, 200), "prior")  # leaves the image at the left and bottom
    for tta in (False, True):
        probs = model.predict([mask * 255], [region], tta_hflip=tta)[0]
        canvas = np.zeros((len(model.train_classes), *hw), np.float32)
        paste(canvas, probs, region.box)
        assert _iou(canvas[CLASS_INDEX["Lunate"]] > 0.5, mask) > 0.95


def test_predict_crops_matches_stage2model(trained):
    _, cfg, run, _ = trained
    model = Stage2Model(run.best, device="cpu")
    crop = (np.random.default_rng(0).random((70, 90)) * 255).astype(np.uint8)
    direct = predict_crops(model.net, [crop], 64, model.preprocess, torch.device("cpu"))[0]
    via = model.predict([crop], [Region((0, 0, 90, 70), "carpals")])[0]
    np.testing.assert_allclose(direct, via, atol=1e-6)


# --- command line and torchrun -------------------------------------------------------------------------------

def test_cli_trains_end_to_end_and_rejects_bad_data(synth_root, tmp_path):
    runner = CliRunner()
    args = ["train-stage2", "--data", str(synth_root / "train"), "--config", CPU_CONFIG, *TINY,
            f"out={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", "name=cli"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "cli" / "best.pt").is_file() and "stage 2 checkpoint" in result.output
    bad = runner.invoke(main, ["train-stage2", "--data", str(tmp_path / "nowhere"), "--config", CPU_CONFIG, *TINY])
    assert bad.exit_code == 2
    lines = [line for line in bad.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "nowhere" in lines[0]


def test_corrupt_image_without_cache_is_named_before_training(train_copy, tmp_path):
    """With cache=false and loader workers the images are read in worker processes; a bad one must still stop
    the run with one line naming it, before the first epoch."""
    victim = sorted(train_copy.glob("DCM/*/*.png"))[0]
    victim.write_bytes(victim.read_bytes()[:80])
    result = CliRunner().invoke(main, ["train-stage2", "--data", str(train_copy), "--config", CPU_CONFIG, *TINY,
                                       "cache=false", "workers=1", f"out={tmp_path / 'runs'}"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and victim.name in lines[0] and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()  # a failed start leaves no run folder behind


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_single_process_runs_the_ddp_path(synth_root, tmp_path, monkeypatch):
    """What `torchrun --nproc_per_node=1` sets: training joins a gloo group of one, uses DistributedSampler and
    DDP, and leaves no group behind."""
    for key, value in {"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": str(_free_port())}.items():
        monkeypatch.setenv(key, value)
    run = train_stage2(synth_root / "train", _cfg(tmp_path, "name=ddp"), log=lambda _: None)
    assert run.last.is_file() and load_checkpoint(run.last)["epoch"] == 1
    assert not torch.distributed.is_initialized()


def test_torchrun_command_line_one_process(synth_root, tmp_path):
    """The documented command itself, as a user runs it (one process, gloo on the CPU)."""
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1",
           "-m", "cascade.cli", "train-stage2", "--data", str(synth_root / "train"), "--config", CPU_CONFIG, *TINY,
           f"out={tmp_path / 'runs'}", f"cache_dir={tmp_path / 'cache'}", "name=torchrun"]
    done = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))), env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert load_checkpoint(tmp_path / "runs" / "torchrun" / "last.pt")["epoch"] == 1


def test_validation_on_the_device_scores_as_the_host_did(trained, synth_root):
    """Thresholds and per-class Dice sums on the device give exactly the host's dice_per_class over the native
    crops (what validation computed before it stayed on the device)."""
    from convert.dice import dice_per_class
    from stage2_segment.data import preprocess_for, split_items
    from stage2_segment.validation import validate
    from stage2_segment import distributed
    from stage2_segment.model import build_unet

    tmp, cfg, run, _ = trained
    cfg = replace(cfg, class_thresholds={"Lunate": 0.3, "Ulna": 0.7})
    net = build_unet(cfg.encoder, len(cfg.train_classes), cfg.decoder_channels).eval()
    net.load_state_dict(load_checkpoint(run.last)["state_dict"])
    items = split_items(scan(synth_root / "train"), cfg).val
    store = crop_store_for(cfg, tmp / "cache")
    got = validate(net, items, store, cfg, torch.device("cpu"), distributed.Dist())
    net.eval()  # validate hands the network back in training mode

    classes = [CLASS_INDEX[c] for c in cfg.train_classes]
    thresholds = np.asarray(cfg.thresholds(), np.float32)[:, None, None]
    sums, counts = np.zeros((2, len(classes))), np.zeros(2)
    for item in items:
        entry = store.get(item)
        image, truth = val_crop(entry, classes)
        probs = predict_crops(net, [image], cfg.input_size, preprocess_for(cfg), torch.device("cpu"))[0]
        sums[int(entry.bent)] += dice_per_class(probs >= thresholds, truth)
        counts[int(entry.bent)] += 1
    np.testing.assert_array_equal(got.counts, counts)
    np.testing.assert_allclose(got.sums, sums, rtol=1e-12)
    assert 0 < sums.mean() < 1  # neither all empty nor all perfect: the comparison means something


def test_checkpoint_records_the_precision_that_ran(trained):
    """A CPU run asked for AMP runs (and infers) in float32: the checkpoint says so, whatever the config said."""
    from stage2_segment.precision import Precision

    tmp, cfg, run, _ = trained
    ckpt = load_checkpoint(run.best)
    assert ckpt["precision"] == {"amp_dtype": None, "channels_last": cfg.channels_last}
    asked = Precision.of(True, "bfloat16", True, torch.device("cpu"))
    assert asked == Precision(None, True) and not asked.scaled
    assert Precision.from_checkpoint({**ckpt, "precision": asked.as_dict()}).dtype is None
    # older checkpoints recorded only the config: they trained as it said, in float16 then
    old = {k: v for k, v in ckpt.items() if k != "precision"}
    assert Precision.from_checkpoint({**old, "config": {"amp": True}}) == Precision("float16", True)
