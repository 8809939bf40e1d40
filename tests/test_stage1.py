"""Stage 1: training offline on the CPU, loading the weights back, and instance -> semantic masks."""

import shutil
import socket
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from cascade.cli import main
from configs import CONFIG_DIR
from convert.carpal_region import REGION_SOURCES, carpal_region
from convert.classes import REGION_CLASS_ID
from convert.dataset import scan
from convert.images import read_image
from convert.yolo import convert_to_yolo
from plumbing.errors import CascadeError, DataError
from stage1_detect.config import load_stage1_config, resolve_model
from stage1_detect.predict import Stage1Model
from stage1_detect.train import check_yolo_data
from stage1_detect.ultralytics_offline import amp_check_without_download


def test_training_writes_weights_that_carry_the_region_rule(stage1_run):
    assert stage1_run.best.is_file() and (stage1_run.run_dir / "cascade_stage1.yaml").is_file()
    assert (stage1_run.run_dir / "results.csv").is_file()  # ultralytics' own metrics
    model = Stage1Model(stage1_run.best, device="cpu")
    prior = model.region_cfg.prior
    # measured on the training labels, not the built-in default
    assert prior.mean_box != load_stage1_config().region.prior.mean_box
    assert 0 < prior.mean_box[0] < prior.mean_box[2] < 1


def test_inference_on_any_image_gives_native_size_masks(stage1_run, synth_root):
    model = Stage1Model(stage1_run.best, device="cpu")
    image = read_image(scan(synth_root / "train").items[0].image)
    wide16 = (np.pad(image, ((0, 0), (0, 64))).astype(np.uint16) * 200)  # 16-bit, not square
    colour = np.dstack([image] * 3)
    outs = model.predict([image, wide16, colour])
    assert [o.masks.shape for o in outs] == [(29, 192, 192), (29, 192, 256), (29, 192, 192)]
    for o in outs:
        assert o.masks.dtype == np.uint8 and set(np.unique(o.masks)) <= {0, 1}
        assert o.scores.shape == (29,) and ((o.scores == 0) == (o.masks.sum(axis=(1, 2)) == 0)).all()
        assert o.region.source in REGION_SOURCES
        x0, y0, x1, y1 = o.region.box
        assert 0 <= x0 < x1 <= o.masks.shape[2] and 0 <= y0 < y1 <= o.masks.shape[1]
    assert model.predict([]) == []


class _Boxes:
    """The two fields of ultralytics' Boxes that stage 1 reads."""

    def __init__(self, classes, confs, xyxy=None):
        self.cls = torch.tensor(classes, dtype=torch.float32)
        self.conf = torch.tensor(confs)
        self.xyxy = torch.tensor(xyxy if xyxy is not None else [[0.0] * 4] * len(classes))

    def __len__(self):
        return len(self.cls)


def _result(classes, confs, masks, xyxy=None):
    return SimpleNamespace(masks=SimpleNamespace(data=torch.as_tensor(np.array(masks, np.uint8))),
                           boxes=_Boxes(classes, confs, xyxy))


def test_instances_to_semantic_keeps_best_instance_and_overlaps(stage1_run):
    model = Stage1Model(stage1_run.best, device="cpu")
    a, b, c = (np.zeros((10, 12), np.uint8) for _ in range(3))
    a[2:6, 2:6] = 1     # Triquetrum, conf 0.9
    b[4:8, 4:8] = 1     # Pisiform overlapping it
    c[0:2, 0:2] = 1     # a weaker second Triquetrum: must lose
    out = model._semantic(_result([25, 26, 25], [0.9, 0.8, 0.3], [a, b, c]), (10, 12))
    np.testing.assert_array_equal(out.masks[25], a)
    np.testing.assert_array_equal(out.masks[26], b)
    assert (out.masks[25] & out.masks[26]).sum() == 4  # both labels kept on the overlap
    assert out.scores[25] == pytest.approx(0.9) and out.scores[26] == pytest.approx(0.8)
    assert out.masks[:25].sum() == 0 and out.scores[:25].sum() == 0
    empty = model._semantic(SimpleNamespace(masks=None, boxes=[]), (10, 12))
    assert empty.masks.sum() == 0 and empty.region.source == "prior"


def test_bad_data_and_settings_are_one_line_errors(tmp_path, synth_root):
    with pytest.raises(DataError, match="no data.yaml"):
        check_yolo_data(tmp_path)
    (tmp_path / "data.yaml").write_text("path: /x\ntrain: a\nval: b\nnames: {0: cat}\n")
    with pytest.raises(DataError, match="has 1 class names, expected the 29"):
        check_yolo_data(tmp_path)
    with pytest.raises(CascadeError, match="not a stage 1 key.* \\(did you mean 'epochs'\\?\\)$"):
        load_stage1_config(None, ["epochz=3"])
    (tmp_path / "stage1.yaml").write_text("ultralytics:\n  imgs: 64\n")
    with pytest.raises(DataError, match="unknown ultralytics argument\\(s\\) imgs \\(did you mean 'imgsz'\\?\\)$"):
        load_stage1_config(tmp_path / "stage1.yaml")
    with pytest.raises(CascadeError, match="weights file not found"):
        resolve_model("missing.pt")
    with pytest.raises(CascadeError, match="sizes n s m l x"):
        resolve_model("yolo11q-seg")
    result = CliRunner().invoke(main, ["train-stage1", "--data", str(tmp_path), "epochs=1"])
    assert result.exit_code == 2 and result.output.startswith("error:") and result.output.count("\n") == 1


@pytest.mark.parametrize("override, words", [
    ("epochs=abc", "'epochs' must be an int"),
    ("lr0=abc", "Valid 'lr0' types"),
    ("device=foo", "device 'foo'"),
    ("model={bad_pt}", "not a loadable YOLO model"),
    ("label=40", "not a class id"),
])
def test_settings_and_labels_are_checked_before_training(yolo_set, tmp_path, override, words):
    data = yolo_set
    if override == "label=40":  # a hand-edited label file with a class id beyond the 29
        data = tmp_path / "set"
        shutil.copytree(yolo_set, data)
        label = sorted((data / "labels" / "train").glob("*.txt"))[0]
        label.write_text("40 0.1 0.1 0.2 0.1 0.2 0.2\n" + label.read_text())
    (tmp_path / "bad.pt").write_text("not a model")
    args = ["train-stage1", "--data", str(data), "--config", str(CONFIG_DIR / "stage1_cpu.yaml"), "epochs=1",
            f"project={tmp_path / 'runs'}"]
    if override != "label=40":
        args.append(override.format(bad_pt=tmp_path / "bad.pt"))
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and words in result.output and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "runs").exists()  # nothing trained, nothing written


def test_empty_split_is_rejected(synth_root, tmp_path):
    data = convert_to_yolo(synth_root / "train", tmp_path / "y", folds=3, workers=2).out
    for f in (data / "images" / "val").iterdir():
        f.unlink()
    with pytest.raises(DataError, match="val split .* has no images"):
        check_yolo_data(data)


def test_rank_in_class_orders_rows_by_confidence_within_each_class():
    from stage1_detect.predict import rank_in_class

    pred = torch.tensor([[0, 0, 1, 1, 0.3, 5, 7.0],
                         [0, 0, 1, 1, 0.9, 5, 8.0],
                         [0, 0, 1, 1, 0.2, 2, 9.0],
                         [0, 0, 1, 1, 0.9, 5, 6.0]])  # a tie: the earlier row ranks first
    assert rank_in_class(pred).tolist() == [2, 0, 0, 1]


@pytest.mark.parametrize("orig_hw", [(300, 400), (333, 401), (517, 203), (256, 256), (2048, 1663)])
def test_top_instance_predictor_gives_the_same_semantic_masks(stage1_run, orig_hw):
    """Masks built only for each class's best instance, inside its box, must equal ultralytics' full path (every
    instance upsampled to the whole image, then the best kept), whatever the letterbox geometry."""
    from ultralytics.models.yolo.segment import SegmentationPredictor

    from stage1_detect.predict import _top_instance_predictor

    gen = torch.Generator().manual_seed(0)
    n, nm = 60, 32
    xy = torch.rand(n, 2, generator=gen) * 180
    wh = 20 + torch.rand(n, 2, generator=gen) * 60
    pred = torch.cat([xy, xy + wh, torch.rand(n, 1, generator=gen),
                      torch.randint(0, 29, (n, 1), generator=gen).float(), torch.randn(n, nm, generator=gen)], 1)
    proto = torch.randn(nm, 64, 64, generator=gen)
    img = torch.zeros(1, 3, 256, 256)
    orig = np.zeros((*orig_hw, 3), np.uint8)
    model = Stage1Model(stage1_run.best, device="cpu")
    results = []
    for cls in (SegmentationPredictor, _top_instance_predictor()):
        predictor = cls(overrides={"retina_masks": True, "conf": 0.01})
        predictor.model = SimpleNamespace(names={i: str(i) for i in range(29)})
        results.append(model._semantic(predictor.construct_result(pred.clone(), img, orig, "x.png", proto),
                                       orig.shape[:2]))
    full, fast = results
    assert full.masks.sum() > 0 and (full.scores > 0).sum() > 10
    np.testing.assert_allclose(fast.scores, full.scores)
    for c, (x0, y0, x1, y1) in enumerate(fast.boxes):  # each class's pixels inside its recorded box
        assert fast.masks[c].sum() == fast.masks[c, max(y0, 0):y1, max(x0, 0):x1].sum()
    assert full.boxes is None  # ultralytics' own path records none: the encoder scans
    differ = (fast.masks != full.masks).sum()
    assert differ <= full.masks.sum() * 1e-5, f"{differ} pixels differ"  # float rounding at a logit of ~0 only


@pytest.mark.parametrize("proto_hw,hw", [((64, 64), (333, 401)), ((64, 48), (517, 203)), ((160, 160), (2048, 2048))])
def test_box_masks_equal_ultralytics_native_masks(proto_hw, hw):
    from ultralytics.utils import ops

    from stage1_detect.box_masks import BoxMasks

    gen = torch.Generator().manual_seed(0)
    proto, coeffs = torch.randn(32, *proto_hw, generator=gen), torch.randn(12, 32, generator=gen)
    size = torch.tensor([hw[1], hw[0]])
    xy = torch.rand(12, 2, generator=gen) * size * 0.7
    boxes = torch.cat([xy, xy + 3 + torch.rand(12, 2, generator=gen) * size * 0.3], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, hw[1])
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, hw[0])
    theirs = ops.process_mask_native(proto, coeffs, boxes.clone(), hw)
    ours = torch.zeros_like(theirs)
    for i, (y0, x0, m) in enumerate(BoxMasks()(proto, coeffs, boxes, hw)):
        ours[i, y0:y0 + m.shape[0], x0:x0 + m.shape[1]] = m
    assert theirs.sum() > 1000
    assert (ours != theirs).sum() <= theirs.sum() * 1e-5  # float rounding at a logit of ~0 only


def test_box_masks_fall_back_when_the_geometry_is_not_ultralytics(monkeypatch):
    """Another ultralytics version may resample differently: the check against its output must catch it."""
    from stage1_detect import box_masks

    real = box_masks.ultralytics_operators
    monkeypatch.setattr(box_masks, "ultralytics_operators",
                        lambda mh, mw, h, w: tuple(torch.roll(op, 1, 0) for op in real(mh, mw, h, w)))
    proto = torch.randn(32, 64, 64, generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="resamples masks differently"):
        assert box_masks.BoxMasks()(proto, torch.ones(1, 32), torch.tensor([[0.0, 0.0, 50.0, 50.0]]),
                                    (300, 400)) is None


def test_amp_check_on_an_accelerator_does_not_reach_for_the_network_offline(monkeypatch):
    import ultralytics.engine.trainer as engine
    from ultralytics.utils import checks

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("the network was used")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(engine, "check_amp", checks.check_amp)  # unguarded (training in this process guards it)
    accelerator_model = torch.nn.Linear(1, 1, device="meta")  # neither CPU nor MPS: ultralytics runs its check
    assert engine.check_amp(accelerator_model) and attempts  # ultralytics alone tries to download its weights
    attempts.clear()
    amp_check_without_download(None)  # the callback train_stage1 registers
    assert engine.check_amp(accelerator_model) and not attempts  # AMP kept, as ultralytics does offline
    assert not engine.check_amp(torch.nn.Linear(1, 1))  # its own rules still apply: no AMP on the CPU


def test_a_relative_project_lands_under_the_current_folder(yolo_set, tmp_path, monkeypatch):
    # ultralytics alone would put it under the runs_dir of its settings file, wherever that was first made
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train-stage1", "--data", str(yolo_set), "model=yolo11n-seg", "epochs=1",
                                       "imgsz=64", "batch=4", "device=cpu", "workers=0", "amp=false", "plots=false",
                                       "val=false", "project=runs/rel", "name=here"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "runs" / "rel" / "here" / "weights" / "last.pt").is_file()


def test_stage1_leaves_torch_threads_as_it_found_them(stage1_run, yolo_set, tmp_path, monkeypatch):
    """ultralytics sets torch's CPU threads to cores - 1 when it picks the CPU; stage 2 and the paste run after
    stage 1 in the same process and must keep every thread the caller had (and CPU training uses them all)."""
    from ultralytics.utils import NUM_THREADS

    import stage1_detect.train as train_module
    from stage1_detect.threads import all_threads_while_training

    before = torch.get_num_threads()
    wanted = NUM_THREADS + 1  # anything but what ultralytics would set
    during = []

    def spy(threads):
        inner = all_threads_while_training(threads)
        return lambda trainer: (inner(trainer), during.append(torch.get_num_threads()))

    monkeypatch.setattr(train_module, "all_threads_while_training", spy)
    torch.set_num_threads(wanted)
    try:
        Stage1Model(stage1_run.best, device="cpu").predict([np.zeros((96, 96), np.uint8)])
        assert torch.get_num_threads() == wanted
        cfg = load_stage1_config(None, ["model=yolo11n-seg", "epochs=1", "imgsz=64", "batch=4", "device=cpu",
                                        "workers=0", "amp=false", "plots=false", "val=false", f"project={tmp_path}"])
        train_module.train_stage1(yolo_set, cfg)
        assert during == [wanted]  # every thread while training on the CPU
        assert torch.get_num_threads() == wanted  # and after it
    finally:
        torch.set_num_threads(before)


def test_off_a_terminal_ultralytics_bars_write_only_their_finished_line():
    """`cascade demo > log`: no carriage return, no ANSI erase code, one line per bar, not one per batch."""
    import io

    from ultralytics.utils.tqdm import TQDM

    from stage1_detect.train import bars_for

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, drawn in ((io.StringIO(), False), (Terminal(), True)):
        with bars_for(stream):
            for _ in TQDM(range(50), desc="epoch 1/3", file=stream, mininterval=0, disable=False):
                pass
        text = stream.getvalue()
        assert ("\r" in text) == drawn and ("\033[K" in text) == drawn
        if not drawn:
            assert text.count("\n") == 1 and "50/50" in text
    from ultralytics.utils import tqdm as bars
    assert not bars.is_noninteractive_console()  # put back after training


def test_the_region_class_is_the_region_never_a_mask(stage1_run):
    """ultralytics' own path: a region row gives the region (when confident) and no mask or score."""
    model = Stage1Model(stage1_run.best, device="cpu")
    assert model.detects_region and model.region_box_margin == model.region_cfg.margin
    model.region_conf = 0.5
    bone, region = np.zeros((40, 40), np.uint8), np.ones((40, 40), np.uint8)
    bone[2:6, 2:6] = 1
    boxes = [[0, 0, 0, 0], [10.0, 12.0, 30.0, 32.0], [0.0, 0.0, 40.0, 40.0]]
    out = model._semantic(_result([25, REGION_CLASS_ID, REGION_CLASS_ID], [0.3, 0.8, 0.6], [bone, region, region],
                                  boxes), (40, 40))
    assert out.masks.shape == (29, 40, 40) and out.scores.shape == (29,)
    assert out.masks.sum() == bone.sum() and out.scores[25] == pytest.approx(0.3) and out.scores.sum() < 0.31
    assert out.region.source == "detected" and out.region.box == (10, 12, 30, 32)  # the most confident one
    assert out.detection.conf == pytest.approx(0.8)
    weak = model._semantic(_result([25, REGION_CLASS_ID], [0.3, 0.4], [bone, region], boxes[:2]), (40, 40))
    assert weak.region == carpal_region(weak.masks, model.region_cfg)  # below region_conf: the rule's chain
    alone = model._semantic(_result([REGION_CLASS_ID], [0.9], [region], boxes[1:2]), (40, 40))
    assert alone.masks.sum() == 0 and alone.region.source == "detected"


def test_top_instance_predictor_takes_the_region_out_of_the_bones(stage1_run):
    from stage1_detect.predict import _top_instance_predictor

    gen = torch.Generator().manual_seed(1)
    n, nm = 12, 32
    xy = torch.rand(n, 2, generator=gen) * 100
    cls = torch.tensor([3, 3, 25, 26, REGION_CLASS_ID, REGION_CLASS_ID, 5, 7, 9, 11, 13, 15]).float()
    conf = torch.tensor([0.9, 0.4, 0.7, 0.6, 0.3, 0.55, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    pred = torch.cat([xy, xy + 60, conf[:, None], cls[:, None], torch.randn(n, nm, generator=gen)], 1)
    predictor = _top_instance_predictor()(overrides={"retina_masks": True, "conf": 0.01})
    predictor.model = SimpleNamespace(names={i: str(i) for i in range(30)})
    result = predictor.construct_result(pred.clone(), torch.zeros(1, 3, 256, 256), np.zeros((256, 256, 3), np.uint8),
                                        "x.png", torch.randn(nm, 64, 64, generator=gen))
    assert REGION_CLASS_ID not in result.boxes.cls.tolist()
    assert result.region_detection.conf == pytest.approx(0.55)
    np.testing.assert_allclose(result.region_detection.box, pred[5, :4].tolist(), atol=1e-3)  # same letterbox size
    out = Stage1Model(stage1_run.best, device="cpu")._semantic(result, (256, 256))
    assert out.detection == result.region_detection and out.masks.shape[0] == 29


def test_an_old_29_class_model_still_loads_and_finds_the_region_by_the_rule(synth_root, tmp_path):
    from stage1_detect.train import train_stage1

    old_set = convert_to_yolo(synth_root / "train", tmp_path / "old", folds=3, workers=2, region=None).out
    cfg = load_stage1_config(None, ["model=yolo11n-seg", "epochs=1", "imgsz=64", "batch=4", "device=cpu",
                                    "workers=0", "amp=false", "plots=false", f"project={tmp_path / 'runs'}"])
    model = Stage1Model(train_stage1(old_set, cfg).best, device="cpu")
    assert len(model.model.names) == 29 and not model.detects_region
    image = read_image(scan(synth_root / "train").items[0].image)
    out = model.predict([image])[0]
    assert out.detection is None and out.region.source in REGION_SOURCES[1:]
    assert out.region == carpal_region(out.masks, model.region_cfg)


def test_a_set_with_the_region_class_needs_its_rule(yolo_set, tmp_path):
    data = tmp_path / "set"
    shutil.copytree(yolo_set, data)
    assert check_yolo_data(data) == data / "data.yaml"
    doc = (data / "data.yaml").read_text()
    (data / "data.yaml").write_text(doc.split("cascade_region:")[0])
    with pytest.raises(DataError, match="no `cascade_region:` rule"):
        check_yolo_data(data)
