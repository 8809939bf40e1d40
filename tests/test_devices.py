"""A device torch knows but this build lacks (mps off Apple machines, xpu without XPU support) is one line
naming the device and exit 2 on every command that takes one, not a RuntimeError traceback."""

import pytest
import torch
from click.testing import CliRunner

from cascade.cli import main

LACKING = [d for d in ("mps", "xpu") if not getattr(torch, d).is_available()]
pytestmark = pytest.mark.skipif(not LACKING, reason="this build of torch has every device tried here")


def _one_line(result, device):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and repr(device) in lines[0] and "Traceback" not in result.output, result.output


@pytest.mark.parametrize("device", LACKING)
def test_a_lacking_device_is_one_line(device, stage1_run, stage2_run, synth_root, yolo_set, tmp_path):
    runner = CliRunner()
    images = synth_root / "test" / "DCM"
    image = next(images.rglob("*.png"))
    common = ["--device", device]
    for args in (
            ["predict", "--stage1", str(stage1_run.best), "--stage2", str(stage2_run.best), "--images", str(images),
             "--out", str(tmp_path / "s.csv")],
            ["evaluate", "--data", str(synth_root / "train"), "--folds-file", str(yolo_set / "folds.json"), "--stage1",
             str(stage1_run.best), "--stage2", str(stage2_run.best), "--out", str(tmp_path / "r")],
            ["visualize", "--image", str(image), "--stage1", str(stage1_run.best), "--out", str(tmp_path / "v.png")]):
        _one_line(runner.invoke(main, args + common), device)
    _one_line(runner.invoke(main, ["train-stage2", "--data", str(synth_root / "train"), "epochs=1",
                                   f"device={device}", f"out={tmp_path / 'runs'}"]), device)
    assert not (tmp_path / "r").exists() and not (tmp_path / "runs").exists() and not (tmp_path / "s.csv").exists()


def test_mps_for_stage1_training_is_one_line(yolo_set, tmp_path):
    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    result = CliRunner().invoke(main, ["train-stage1", "--data", str(yolo_set), "model=yolo11n-seg", "epochs=1",
                                       "device=mps", f"project={tmp_path / 'runs'}"])
    assert result.exit_code == 2 and "'mps'" in result.output and "no MPS" in result.output, result.output
    assert not (tmp_path / "runs").exists()
