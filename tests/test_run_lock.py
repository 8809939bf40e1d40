"""One writer per run folder: a second training (stage 1 or 2) or evaluate into a folder another live process is
writing is refused in one line; a lock left by a killed process is taken over with a note."""

import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cascade.cli import main
from plumbing.errors import CascadeError
from plumbing.run_lock import lock_path, run_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY2 = ["--config", "configs/stage2_cpu.yaml", "epochs=1", "input_size=64", "batch=4", "workers=0", "device=cpu",
         "folds=3", "decoder_channels=[16,16,16,16,16]"]


class Holder:
    """Another process holding a folder's lock, as a running training would."""

    def __init__(self, folder):
        self.folder = folder
        code = ("import sys, time\nfrom plumbing.run_lock import run_lock\n"
                "with run_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)\n")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], stdout=subprocess.PIPE, text=True,
                                     env={**os.environ, "PYTHONPATH": ROOT}, cwd=ROOT)
        assert self.proc.stdout.readline().strip() == "held"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


@pytest.fixture
def holder():
    held = []
    yield lambda folder: held.append(Holder(folder)) or held[-1]
    for h in held:
        if h.proc.poll() is None:
            h.kill()


def _one_error_naming(result, folder):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(folder) in lines[0] and f"process {os.getpid()}" not in lines[0]
    assert "another run is writing it" in lines[0] and "Traceback" not in result.output


def test_lock_is_exclusive_and_released(tmp_path):
    folder = tmp_path / "runs" / "x"
    with run_lock(folder):
        assert lock_path(folder).is_file()
        with pytest.raises(CascadeError, match=f"process {os.getpid()} on"):
            with run_lock(folder):
                pass
    assert not lock_path(folder).exists() and not (tmp_path / "runs").exists()  # made for the lock, left empty
    with run_lock(folder):  # free again
        pass


def test_second_stage2_training_of_a_name_is_refused(synth_root, tmp_path, holder):
    run_dir = tmp_path / "runs" / "X"
    first = holder(run_dir)
    args = ["train-stage2", "--data", str(synth_root / "train"), *TINY2, f"out={tmp_path / 'runs'}", "name=X",
            f"cache_dir={tmp_path / 'cache'}"]
    runner = CliRunner()
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        _one_error_naming(runner.invoke(main, args), run_dir)
        assert not run_dir.exists()  # nothing written into the other run's folder
        first.kill()  # dies holding the lock: its file stays
        assert lock_path(run_dir).is_file()
        taken = runner.invoke(main, args)
    finally:
        os.chdir(old)
    assert taken.exit_code == 0, taken.output
    assert "taking over the lock of a run that is no longer running" in taken.output
    assert f"process {first.proc.pid}" in taken.output
    assert (run_dir / "best.pt").is_file() and not lock_path(run_dir).exists()


def test_second_stage1_training_and_second_evaluate_are_refused(yolo_set, synth_root, tmp_path, holder):
    runs = tmp_path / "runs1"
    holder(runs / "train")
    result = CliRunner().invoke(main, ["train-stage1", "--data", str(yolo_set), "model=yolo11n-seg", "epochs=1",
                                       "imgsz=64", "device=cpu", "workers=0", f"project={runs}", "name=train"])
    _one_error_naming(result, runs / "train")
    assert not (runs / "train").exists()

    out = tmp_path / "report"
    holder(out)
    result = CliRunner().invoke(main, ["evaluate", "--data", str(synth_root / "train"), "--folds-file",
                                       str(yolo_set / "folds.json"), "--submission", str(tmp_path / "none.csv"),
                                       "--out", str(out)])
    _one_error_naming(result, out)
    assert not out.exists()
