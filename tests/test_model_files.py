"""A model file never runs code: a stage 1 .pt whose pickle calls a function is refused, on every path that
loads stage 1 weights, with one line naming the file and the global, before ultralytics unpickles it."""

import os

import pytest
import torch
from click.testing import CliRunner

from cascade.cli import main
from plumbing.errors import DataError
from stage1_detect.safe_load import safe_load
from stage1_detect.weights import embed_meta


class _Payload:
    """Unpickling it calls the global `call` with `args`: what a malicious checkpoint does."""

    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


@pytest.fixture
def evil(tmp_path):
    """A .pt that, loaded by ultralytics (weights_only=False), would run a shell command writing `marker`."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload(os.system, f"touch {marker}"), "train_args": {}}, path)
    return path, marker


def _refused(result, path, marker):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(path) in lines[0] and "system" in lines[0], result.output
    assert not marker.exists()  # the payload never ran


def test_safe_load_refuses_any_callable_and_names_it(evil, tmp_path):
    path, marker = evil
    with pytest.raises(DataError, match=r"evil\.pt: refused: its pickle calls posix\.system"):
        safe_load(path)
    # a function inside an allowed module is still a function, not a network class
    from ultralytics.nn import tasks

    sneaky = tmp_path / "sneaky.pt"
    torch.save({"model": _Payload(tasks.yaml_model_load, "yolo11n-seg.yaml")}, sneaky)
    with pytest.raises(DataError, match="ultralytics.nn.tasks.yaml_model_load"):
        safe_load(sneaky)
    with pytest.raises(DataError, match="refused"):
        embed_meta(path, {"region": {}})  # training's own re-save of the weights reads them safely too
    assert not marker.exists()


def test_real_checkpoint_loads(stage1_run):
    ckpt = safe_load(stage1_run.best)
    assert type(ckpt["model"]).__name__ == "SegmentationModel" and "cascade_stage1" in ckpt


def test_predict_evaluate_visualize_refuse_it(evil, synth_root, yolo_set, tmp_path):
    path, marker = evil
    runner = CliRunner()
    image = next((synth_root / "test" / "DCM").rglob("*.png"))
    commands = [
        ["predict", "--stage1", str(path), "--stage1-only", "--images", str(synth_root / "test" / "DCM"),
         "--out", str(tmp_path / "s.csv"), "--device", "cpu"],
        ["evaluate", "--data", str(synth_root / "train"), "--folds-file", str(yolo_set / "folds.json"),
         "--stage1", str(path), "--out", str(tmp_path / "report"), "--device", "cpu"],
        ["visualize", "--image", str(image), "--stage1", str(path), "--out", str(tmp_path / "v.png"),
         "--device", "cpu"],
        ["train-stage1", "--data", str(yolo_set), f"model={path}", "epochs=1", "device=cpu",
         f"project={tmp_path / 'runs'}"],
        ["train-stage1", "--data", str(yolo_set), "model=yolo11n-seg", f"pretrained={path}", "epochs=1",
         "device=cpu", f"project={tmp_path / 'runs'}"],
    ]
    for args in commands:
        _refused(runner.invoke(main, args), path, marker)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "report").exists()


def test_ensembles_refuse_it(evil, stage1_run, synth_root, yolo_set, tmp_path):
    path, marker = evil
    runner = CliRunner()
    good = str(stage1_run.best)
    _refused(runner.invoke(main, ["predict", "--stage1", good, "--stage1", str(path), "--stage1-only", "--images",
                                  str(synth_root / "test" / "DCM"), "--out", str(tmp_path / "s.csv"),
                                  "--device", "cpu"]), path, marker)
    _refused(runner.invoke(main, ["evaluate", "--data", str(synth_root / "train"), "--folds-file",
                                  str(yolo_set / "folds.json"), "--stage1", f"{good},{path}",
                                  "--out", str(tmp_path / "report"), "--device", "cpu"]), path, marker)
