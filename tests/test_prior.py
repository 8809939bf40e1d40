"""Stage 2 that sees the full-hand prediction: the prior's geometry, its corruptions, old checkpoints and the
errors around it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cascade.fullhand import predict_whole_images
from cascade.pipeline import Cascade
from configs import CONFIG_DIR
from convert.carpal_region import Region
from convert.classes import CARPAL_INDICES, CLASS_INDEX, CLASSES
from convert.dataset import iter_samples, scan
from convert.masks import class_masks
from convert.submission import encode_masks, write_submission
from convert.submission_rows import SubmissionRows
from plumbing.errors import CascadeError
from stage2_segment.config import load_stage2_config
from stage2_segment.data import TrainCrops, crop_store_for, split_prior
from stage2_segment.file_priors import FilePriors
from stage2_segment.geometry import crop_padded
from stage2_segment.predict import Stage2Model
from stage2_segment.prior import PRESETS, SWAP_PAIRS, PriorConfig, corrupt, cut_prior, gated
from stage2_segment.train import train_stage2

CLEAN = ["prior.empty_prob=0", "prior.wrong_prob=0", "prior.drop_prob=0", "prior.swap_prob=0", "prior.morph_prob=0",
         "prior.shift_px=0"]


def tiny(tmp_path, *overrides):
    return load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml", [
        "epochs=1", "input_size=64", "batch=4", "workers=0", "device=cpu", "decoder_channels=[16,16,16,16,16]",
        "folds=3", f"out={tmp_path / 'runs'}", "cache=false", *overrides])


@pytest.fixture(scope="module")
def prior_run(synth_root, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prior")
    return train_stage2(synth_root / "train", tiny(tmp, "prior.classes=neighbours"), log=lambda _: None)


def test_the_prior_is_the_full_hand_masks_cut_with_the_crops_geometry():
    rng = np.random.default_rng(0)
    full = (rng.random((29, 50, 70)) < 0.3).astype(np.uint8)
    for box in [(10, 5, 40, 35), (-8, -6, 30, 30), (50, 30, 90, 70)]:  # inside, over the top-left, past the corner
        prior = cut_prior(full, [19, 3, 28], box)
        assert prior.shape == (3, box[3] - box[1], box[2] - box[0]) and prior.dtype == np.uint8
        for j, c in enumerate([19, 3, 28]):
            assert np.array_equal(prior[j], crop_padded(full[c], box))  # the same pixels the grey crop holds


def test_training_priors_move_with_exactly_the_labels_geometry(synth_root, tmp_path):
    """Uncorrupted, the prior channels of every jittered, rotated, flipped, resized crop equal its labels."""
    cfg = tiny(tmp_path, "prior.classes=carpals", *CLEAN, "augment.rotate_prob=1", "augment.hflip=0.5")
    crops = TrainCrops(scan(synth_root / "train").items[:4], crop_store_for(cfg, None), cfg)
    torch.manual_seed(0)
    for i in range(4):
        x, packed = crops[i]
        labels, prior = split_prior(packed[None], len(crops.classes), len(crops.prior_classes))
        assert x.shape == (1, 64, 64) and prior.shape == (1, 8, 64, 64)
        carpal_rows = [crops.classes.index(c) for c in CARPAL_INDICES]
        assert torch.equal(prior[0], labels[0, carpal_rows])
        assert prior.sum() > 0


@pytest.mark.parametrize("kind", ["empty", "drop", "swap", "morph", "shift", "wrong"])
def test_each_corruption_keeps_shape_and_classes_and_changes_what_they_say(synth_root, kind):
    sample = next(iter_samples(scan(synth_root / "train").items[:1]))
    classes = PRESETS["neighbours"]
    masks = class_masks(sample.polygons, sample.hw)[list(classes)]
    off = dict(empty_prob=0, wrong_prob=0, drop_prob=0, swap_prob=0, morph_prob=0, shift_px=0)
    on = {"empty": dict(empty_prob=1), "drop": dict(drop_prob=1), "swap": dict(swap_prob=1),
          "morph": dict(morph_prob=1, morph_radius=(2, 3)), "shift": dict(shift_px=4), "wrong": dict(wrong_prob=1)}
    cfg = PriorConfig("neighbours", **{**off, **on[kind]})
    before = masks.copy()
    out = corrupt(masks, classes, cfg, np.random.default_rng(1))
    assert np.array_equal(masks, before)  # the labels themselves are untouched
    assert out.shape == masks.shape and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    assert not np.array_equal(out, masks)
    if kind == "swap":
        pos = {c: j for j, c in enumerate(classes)}
        for a, b in SWAP_PAIRS:
            assert np.array_equal(out[pos[a]], masks[pos[b]]) and np.array_equal(out[pos[b]], masks[pos[a]])
    if kind in ("empty", "drop"):
        assert out.sum() == 0
    assert np.array_equal(corrupt(masks, classes, PriorConfig("neighbours", **off), np.random.default_rng(1)), masks)


def test_prior_settings_are_checked():
    for bad, word in [({"classes": "some"}, "classes"), ({"classes": ["Lunate", "Moon"]}, "Moon"),
                      ({"drop_prob": 1.5}, "drop_prob"), ({"morph_radius": (3, 1)}, "morph_radius")]:
        with pytest.raises(ValueError, match=word):
            PriorConfig(**bad)
    assert PriorConfig(["Pisiform", "Lunate"]).indices == [CLASS_INDEX["Lunate"], CLASS_INDEX["Pisiform"]]
    with pytest.raises(ValueError, match="min_carpals"):
        PriorConfig(min_carpals=9)
    # the gate never asks for more carpals than the prior holds, nor for any without a prior
    assert PriorConfig(["Pisiform", "Lunate"]).gate == 2 and PriorConfig(["Radius"]).gate == 0
    assert PriorConfig("neighbours").gate == PriorConfig().min_carpals and PriorConfig("none").gate == 0


def test_a_prior_holding_too_few_carpals_is_emptied_and_others_pass_unchanged():
    classes = PRESETS["neighbours"]
    prior = np.zeros((len(classes), 20, 20), np.uint8)
    prior[:, 5:9, 5:9] = 1
    carpal_rows = [j for j, c in enumerate(classes) if c in CARPAL_INDICES]
    assert gated(prior, classes, 8) is prior and gated(prior, classes, 0) is prior
    few = prior.copy()
    few[carpal_rows[4:]] = 0  # 4 carpals left, every neighbour still there
    out = gated(few, classes, 5)
    assert out.shape == few.shape and out.dtype == few.dtype and not out.any()
    assert few[carpal_rows[:4]].all(axis=0).any()  # the input is not changed
    assert gated(few, classes, 4) is few


def test_the_checkpoint_records_its_prior_and_an_old_one_loads_as_none(prior_run, stage2_run, tmp_path):
    ckpt = torch.load(prior_run.best, weights_only=True)
    assert ckpt["prior_classes"] == [CLASSES[c] for c in PRESETS["neighbours"]]
    assert ckpt["in_channels"] == 1 + len(PRESETS["neighbours"])
    old = torch.load(stage2_run.best, weights_only=True)
    old.pop("prior_classes")  # as written before priors existed
    torch.save(old, tmp_path / "old.pt")
    model = Stage2Model(tmp_path / "old.pt", device="cpu")
    assert model.prior_classes == [] and not model.needs_prior
    assert ckpt["prior_min_carpals"] == PriorConfig().min_carpals
    assert torch.load(stage2_run.best, weights_only=True)["prior_min_carpals"] == 0  # no prior: nothing to gate
    before_gate = dict(ckpt)
    before_gate.pop("prior_min_carpals")  # a prior model written before the gate saw every prior as it was
    torch.save(before_gate, tmp_path / "before_gate.pt")
    assert Stage2Model(tmp_path / "before_gate.pt", device="cpu").prior_min_carpals == 0
    image = np.full((100, 120), 90, np.uint8)
    assert model.predict([image], [Region((10, 10, 60, 60), "carpals")])[0].shape[-2:] == (50, 50)


def test_a_prior_model_without_a_full_hand_prediction_is_a_one_line_error(prior_run, synth_root, tmp_path):
    model = Stage2Model(prior_run.best, device="cpu")
    image = np.full((100, 120), 90, np.uint8)
    with pytest.raises(CascadeError, match="full-hand prediction") as err:
        model.predict([image], [Region((10, 10, 60, 60), "carpals")])
    assert "\n" not in str(err.value)
    with pytest.raises(CascadeError, match="full-hand"):  # refused before any image is read
        predict_whole_images(prior_run.best, [tmp_path / "missing.png"], tmp_path / "out.csv", device="cpu")
    assert not (tmp_path / "out.csv").exists()


def test_the_cascade_feeds_the_base_masks_to_a_prior_model_and_they_matter(prior_run, synth_root, tmp_path):
    items = scan(synth_root / "train").items[:2]
    samples = list(iter_samples(items))
    truth = {s.item.name: class_masks(s.polygons, s.hw) for s in samples}
    write_submission(tmp_path / "truth.csv", {n: encode_masks(m) for n, m in truth.items()})
    write_submission(tmp_path / "empty.csv", {n: encode_masks(np.zeros_like(m)) for n, m in truth.items()})
    images, names = [s.image for s in samples], [s.item.name for s in samples]
    regions = [Region((40, 60, 140, 160), "carpals")] * 2
    model = Stage2Model(prior_run.best, device="cpu")
    direct = model.predict(images, regions, full=list(truth.values()))
    outs = Cascade(None, prior_run.best, device="cpu", base=SubmissionRows(tmp_path / "truth.csv")).run(images, names)
    for out, name, image in zip(outs, names, images):
        mine = model.predict([image], [out.region], full=[truth[name]])[0]
        channels = [model.train_classes.index(c) for c in out.prob_classes]
        assert np.allclose(out.probs, mine[channels], atol=1e-6)  # the cascade gave it the base's masks
    empty = model.predict(images, regions, full=[np.zeros_like(m) for m in truth.values()])
    assert not np.allclose(direct[0], empty[0])  # the prior channels are read


def test_a_full_hand_prediction_missing_the_carpals_is_fed_as_an_empty_prior(prior_run, synth_root):
    """The demo's stage 1 finds no carpal: the prior model then sees what its empty training priors taught it,
    not neighbours without carpals."""
    sample = next(iter_samples(scan(synth_root / "train").items[:1]))
    truth = class_masks(sample.polygons, sample.hw)
    model = Stage2Model(prior_run.best, device="cpu")
    region = [Region((40, 60, 140, 160), "carpals")]
    few = truth.copy()
    few[list(CARPAL_INDICES[model.prior_min_carpals - 1:])] = 0  # one carpal short of the gate, neighbours kept
    empty = model.predict([sample.image], region, full=[np.zeros_like(truth)])[0]
    assert np.array_equal(model.predict([sample.image], region, full=[few])[0], empty)
    assert not np.allclose(model.predict([sample.image], region, full=[truth])[0], empty)


def test_training_priors_pass_the_same_gate(synth_root, tmp_path):
    """With half the carpals dropped at random and a gate of all 8, every training prior is whole or empty."""
    items = scan(synth_root / "train").items[:3]
    cfg = tiny(tmp_path, "prior.classes=carpals", *CLEAN, "prior.drop_prob=0.5", "prior.min_carpals=8")
    crops = TrainCrops(items, crop_store_for(cfg, None), cfg)
    torch.manual_seed(0)
    for _ in range(4):
        for i in range(len(items)):
            _, packed = crops[i]
            labels, prior = split_prior(packed[None], len(crops.classes), len(crops.prior_classes))
            present = prior[0].flatten(1).amax(1)
            assert present.sum() in (0, 8)  # ungated, 1 to 7 carpals would remain in almost every crop


def _swapped_truth(items, path, keep=None):
    """A submission of items whose masks are the ground truth with Trapezium and Trapezoid exchanged: a base
    prediction that differs from the labels in a way the crop's geometry keeps."""
    a, b = CLASS_INDEX["Trapezium"], CLASS_INDEX["Trapezoid"]
    rows = {}
    for s in iter_samples(list(items)):
        masks = class_masks(s.polygons, s.hw)
        masks[[a, b]] = masks[[b, a]]
        rows[s.item.name] = encode_masks(masks)
    write_submission(path, {n: r for n, r in rows.items() if keep is None or n in keep})
    return path


def test_file_priors_are_the_files_masks_through_the_crops_geometry(synth_root, tmp_path):
    """prior.file: a share of the crops sees the file's masks, moved exactly as the labels; the rest the
    ground truth (here uncorrupted)."""
    items = scan(synth_root / "train").items[:3]
    oof = _swapped_truth(items, tmp_path / "oof.csv")
    cfg = tiny(tmp_path, "prior.classes=carpals", *CLEAN, "augment.rotate_prob=1", "augment.hflip=0.5",
               f"prior.file={oof}", "prior.file_share=0.5")
    store = crop_store_for(cfg, None)
    priors = FilePriors(oof, cfg.prior.indices, items)
    priors.load(items, store, workers=1)
    crops = TrainCrops(items, store, cfg, priors)
    carpal_rows = [crops.classes.index(c) for c in CARPAL_INDICES]
    swapped = list(carpal_rows)
    swapped[0], swapped[1] = swapped[1], swapped[0]  # Trapezium and Trapezoid are the first two carpals
    torch.manual_seed(0)
    seen = {"file": 0, "truth": 0}
    for _ in range(4):
        for i in range(len(items)):
            _, packed = crops[i]
            labels, prior = split_prior(packed[None], len(crops.classes), len(crops.prior_classes))
            assert labels[0, carpal_rows[0]].sum() > 0 and not torch.equal(labels[0, carpal_rows[0]],
                                                                            labels[0, carpal_rows[1]])
            if torch.equal(prior[0], labels[0, swapped]):
                seen["file"] += 1
            else:
                assert torch.equal(prior[0], labels[0, carpal_rows])
                seen["truth"] += 1
    assert seen["file"] and seen["truth"]  # both sources, mixed at file_share


def test_training_with_a_prior_file_runs_and_validates_on_it(synth_root, tmp_path):
    items = scan(synth_root / "train").items
    oof = _swapped_truth(items, tmp_path / "oof.csv")
    run = train_stage2(synth_root / "train", tiny(tmp_path, "prior.classes=carpals", f"prior.file={oof}"),
                       log=lambda _: None)
    assert torch.load(run.best, weights_only=True)["config"]["prior"]["file"] == str(oof)


def _cli_error(synth_root, tmp_path, prior_file, *more):
    from click.testing import CliRunner

    from cascade.cli import main

    result = CliRunner().invoke(main, [
        "train-stage2", "--data", str(synth_root / "train"), "--config", str(CONFIG_DIR / "stage2_cpu.yaml"),
        "epochs=1", "input_size=64", "batch=4", "workers=0", "device=cpu", "folds=3", "cache=false",
        f"out={tmp_path / 'runs'}", "prior.classes=carpals", f"prior.file={prior_file}", *more])
    assert result.exit_code != 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in result.output, result.output
    assert not (tmp_path / "runs").exists()  # refused before the run folder is written
    return lines[0]


def test_a_bad_prior_file_is_a_one_line_error_naming_it(synth_root, tmp_path):
    items = scan(synth_root / "train").items
    short = _swapped_truth(items, tmp_path / "short.csv", keep={it.name for it in items[1:]})
    line = _cli_error(synth_root, tmp_path, short)
    assert "short.csv" in line and items[0].name in line and "not in the base submission" in line

    line = _cli_error(synth_root, tmp_path, tmp_path / "missing.csv")
    assert "missing.csv" in line

    (tmp_path / "garbage.csv").write_text("this,is\nnot a submission\n")
    assert "garbage.csv" in _cli_error(synth_root, tmp_path, tmp_path / "garbage.csv")

    # every image named, but one mask runs past its image (a file made for other image sizes)
    big = tmp_path / "big.csv"
    text = _swapped_truth(items, big).read_text().splitlines()
    victim = next(i for i, row in enumerate(text) if row.startswith(items[0].name + ",Lunate,"))
    text[victim] = f"{items[0].name},Lunate,{10 ** 7} 5"
    big.write_text("\n".join(text) + "\n")
    line = _cli_error(synth_root, tmp_path, big)
    assert "big.csv" in line and items[0].name in line and "Lunate" in line

    line = _cli_error(synth_root, tmp_path, short, "prior.classes=none")
    assert "prior.file" in line and "classes" in line
