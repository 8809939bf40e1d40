"""A full disk is one line naming the file being written and exit 2, never a torch traceback: a stage 2 run
stopped so resumes once there is room; predict and evaluate name their output file, convert its output (not
the input image it was copying). Each case runs on a small tmpfs mounted in a user namespace."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = "--config configs/stage2_cpu.yaml input_size=64 batch=4 workers=0 device=cpu folds=3 " \
       "decoder_channels=[16,16,16,16,16] name=r"


def _can_mount(tmp_path):
    if shutil.which("unshare") is None:
        return False
    probe = tmp_path / "probe"
    probe.mkdir()
    return subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe)],
                          capture_output=True).returncode == 0


@pytest.fixture
def small_disk(tmp_path):
    if not _can_mount(tmp_path):
        pytest.skip("needs unshare and user namespaces to mount a small file system")
    disk = tmp_path / "disk"
    disk.mkdir()

    def run(script: str, size: str):
        """script (sh) run with a tmpfs of `size` mounted at disk; what it copies to tmp_path/keep stays."""
        (tmp_path / "keep").mkdir(exist_ok=True)
        return subprocess.run(["unshare", "-rm", "sh", "-c",
                               f'mount -t tmpfs -o size={size} tmpfs "{disk}" && cd "{ROOT}" && {script}'],
                              env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True)
    return disk, run


def _cli(args: str) -> str:
    return f'"{sys.executable}" -m cascade.cli {args}'


def _error_lines(text):
    return [ln for ln in text.splitlines() if ln.startswith("error:")]


def test_stage2_training_on_a_full_disk_stops_in_one_line_and_resumes(small_disk, synth_root, tmp_path):
    disk, run = small_disk
    keep = tmp_path / "keep"
    train = _cli(f"train-stage2 --data {synth_root / 'train'} {TINY} out={disk} cache_dir={tmp_path / 'cache'}")
    # epoch 1 with room; then the disk filled to a few MB, too few for epoch 2's last.pt; then room again
    script = (f"{train} epochs=1 > {keep}/first.txt 2>&1; echo $? > {keep}/first.rc; "
              f"dd if=/dev/zero of={disk}/filler bs=1M 2>/dev/null; rm -f {disk}/filler; "
              f"dd if=/dev/zero of={disk}/filler bs=1M count=$(( $(df -m --output=avail {disk} | tail -1) - 4 )) "
              f"2>/dev/null; {train} epochs=2 > {keep}/full.txt 2>&1; echo $? > {keep}/full.rc; "
              f"ls -a {disk}/r > {keep}/after_full.ls; rm {disk}/filler; "
              f"{train} epochs=2 > {keep}/again.txt 2>&1; echo $? > {keep}/again.rc; "
              f"cp {disk}/r/results.csv {keep}/")
    done = run(script, "400m")
    assert done.returncode == 0, done.stderr
    assert (keep / "first.rc").read_text().strip() == "0", (keep / "first.txt").read_text()
    full = (keep / "full.txt").read_text()
    assert (keep / "full.rc").read_text().strip() == "2", full
    errors = _error_lines(full)
    assert len(errors) == 1 and "No space left on device" in errors[0] and "Traceback" not in full, full
    assert str(disk / "r") in errors[0] and ".pt" in errors[0].split(":")[1]  # the checkpoint being written
    assert ".tmp" not in (keep / "after_full.ls").read_text()  # no half-written temporary left on the disk
    again = (keep / "again.txt").read_text()
    assert (keep / "again.rc").read_text().strip() == "0", again
    assert "resuming" in again and "after epoch 1" in again
    epochs = [line.split(",")[0] for line in (keep / "results.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]


def test_predict_evaluate_and_convert_name_their_output(small_disk, synth_root, stage1_run, yolo_set, tmp_path):
    disk, run = small_disk
    keep = tmp_path / "keep"
    fill = (f"dd if=/dev/zero of={disk}/filler bs=1K 2>/dev/null; ")  # every block taken
    cmds = {
        "predict": _cli(f"predict --stage1 {stage1_run.best} --stage1-only --images {synth_root / 'test' / 'DCM'} "
                        f"--out {disk}/sub.csv --device cpu"),
        "evaluate": _cli(f"evaluate --data {synth_root / 'train'} --folds-file {yolo_set / 'folds.json'} --stage1 "
                         f"{stage1_run.best} --out {disk}/report --device cpu"),
        "convert": _cli(f"convert --data {synth_root / 'train'} --out {disk}/yolo --folds 3"),
    }
    script = fill + "; ".join(f"{c} > {keep}/{k}.txt 2>&1; echo $? > {keep}/{k}.rc" for k, c in cmds.items())
    done = run(script, "2m")
    assert done.returncode == 0, done.stderr
    for name, target in (("predict", disk / "sub.csv"), ("evaluate", disk / "report"), ("convert", disk / "yolo")):
        out = (keep / f"{name}.txt").read_text()
        assert (keep / f"{name}.rc").read_text().strip() == "2", out
        errors = _error_lines(out)
        assert len(errors) == 1 and "No space left on device" in errors[0], out
        assert errors[0].startswith(f"error: {target}") and "file system" not in errors[0], out
        assert str(synth_root) not in errors[0]  # convert blames its output, not the image it copied
