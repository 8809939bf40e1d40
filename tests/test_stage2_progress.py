"""Watching stage 2 train: the progress bar, results.csv, results.png, the summary and optional TensorBoard.

One tiny 2-epoch run (64 px, a slim decoder, 12 generated images) is shared by the module; the resume test
works on a copy of its run folder.
"""

import contextlib
import csv
import io
import shutil
import sys
import types
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from plumbing.errors import CascadeError
from stage2_segment.checkpoint import load_checkpoint
from stage2_segment.progress import EpochBar
from stage2_segment.results import PLOT_FILE, RESULTS_FILE, Results, TensorBoardScalars, columns
from stage2_segment.train import train_stage2

from test_stage2 import _cfg

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def two_epochs(synth_root, tmp_path_factory):
    """A 2-epoch run with stdout and stderr captured as a log file would (no terminal)."""
    tmp = tmp_path_factory.mktemp("progress")
    cfg = _cfg(tmp, "epochs=2")
    logs, out, err = [], io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        run = train_stage2(synth_root / "train", cfg, log=lambda line: (logs.append(line), print(line)))
    return cfg, run, logs, out.getvalue() + err.getvalue()


def _rows(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def test_results_table_has_one_row_per_epoch_with_every_column(two_epochs):
    cfg, run, _, _ = two_epochs
    assert run.results == run.run_dir / RESULTS_FILE and not (run.run_dir / "metrics.csv").exists()
    header, rows = _rows(run.results)
    assert header == columns(cfg.train_classes)
    for name in ("epoch", "train_loss", "lr", "epoch_s", "val_mean_dice", "val_carpal_dice", "val_carpal_straight",
                 "val_carpal_bent", "dice/Lunate", "dice/finger-1", "dice/Ulna"):
        assert name in header
    assert [r["epoch"] for r in rows] == ["1", "2"]
    for r in rows:
        assert all(r[k] != "" for k in header if k != "peak_gpu_mb")  # every epoch validated (val_every=1)
        assert r["peak_gpu_mb"] == ""  # GPU memory only on a GPU
        assert float(r["train_loss"]) > 0 and float(r["lr"]) > 0 and float(r["epoch_s"]) >= float(r["train_s"])
        dice = [float(r[f"dice/{c}"]) for c in cfg.train_classes]
        assert all(0 <= d <= 1 for d in dice) and float(r["val_mean_dice"]) == pytest.approx(np.mean(dice))
    # the table's best row is the epoch best.pt holds
    best = max(rows, key=lambda r: float(r["val_carpal_dice"]))
    ckpt = load_checkpoint(run.best)
    assert ckpt["epoch"] == int(best["epoch"]) == run.best_epoch
    assert ckpt["best_score"] == pytest.approx(float(best["val_carpal_dice"]))


def test_plot_is_a_valid_png(two_epochs):
    _, run, _, _ = two_epochs
    assert run.plot == run.run_dir / PLOT_FILE
    data = run.plot.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0
    assert not list(run.run_dir.glob(".*.tmp*"))  # written through a temporary file, none left behind


def test_non_terminal_output_is_one_line_per_epoch_without_carriage_returns(two_epochs):
    _, run, logs, output = two_epochs
    assert "\r" not in output and output.strip()
    assert [line.split()[:2] for line in logs if line.startswith("epoch ")] == [["epoch", "1/2"], ["epoch", "2/2"]]
    assert "batch" not in output  # no bar drawn


def test_summary_names_the_best_epoch_its_dice_and_every_file(two_epochs):
    _, run, logs, _ = two_epochs
    best = max(_rows(run.results)[1], key=lambda r: float(r["val_carpal_dice"]))
    assert any(line.startswith(f"best epoch {best['epoch']}: val carpal Dice {float(best['val_carpal_dice']):.4f}")
               for line in logs)
    text = "\n".join(logs)
    for name in ("best.pt", "last.pt", RESULTS_FILE, PLOT_FILE, "config.yaml"):
        assert str(run.run_dir / name) in text
    assert "TensorBoard" not in text  # tensorboard is not installed here


def test_resume_continues_the_table_and_draws_a_bar_on_a_terminal(two_epochs, synth_root, tmp_path, monkeypatch):
    cfg, run, _, _ = two_epochs
    moved = replace(cfg, out=str(tmp_path / "runs"))
    shutil.copytree(run.run_dir, moved.run_dir)
    header, before = _rows(moved.run_dir / RESULTS_FILE)
    # a row past the checkpoint's epoch (as an interrupted run can leave): that epoch runs again, once
    with open(moved.run_dir / RESULTS_FILE, "a", newline="") as f:
        csv.DictWriter(f, header).writerow({**before[-1], "epoch": "3", "train_loss": "123.0"})
    terminal = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    again = train_stage2(synth_root / "train", replace(moved, epochs=3), log=lambda _: None)
    _, after = _rows(again.results)
    assert [r["epoch"] for r in after] == ["1", "2", "3"]
    assert after[:2] == before and float(after[2]["train_loss"]) != 123.0
    assert [r["epoch"] for r in again.history] == [3]
    assert again.plot.read_bytes().startswith(PNG_SIGNATURE)
    bar = terminal.getvalue()
    assert "\r" in bar and "epoch 3/3" in bar and "2/2" in bar and "samples/s" in bar and "loss" in bar
    # starting over empties the table
    fresh = train_stage2(synth_root / "train", replace(moved, epochs=1, resume=False), log=lambda _: None)
    assert [r["epoch"] for r in _rows(fresh.results)[1]] == ["1"]


def test_bar_draws_only_on_a_terminal_and_only_for_rank_0():
    for stream, enabled, drawn in [(FakeTerminal(), True, True), (io.StringIO(), True, False),
                                   (FakeTerminal(), False, False)]:
        with EpochBar(3, "epoch 1/1", enabled=enabled, stream=stream) as bar:
            for i in range(3):
                bar.step(4, torch.tensor(2.0 * 4 * (i + 1)), 4 * (i + 1))
        text = stream.getvalue()
        assert bar.drawing is False  # closed
        if drawn:
            assert "3/3" in text and "loss 2.0000" in text and "samples/s" in text and "\r" in text
        else:
            assert text == ""


def test_a_foreign_results_table_is_a_one_line_error(tmp_path):
    (tmp_path / RESULTS_FILE).write_text("epoch,train_loss\n1,abc\n")
    with pytest.raises(CascadeError) as err:
        Results(tmp_path, ["Lunate"]).start(after_epoch=1)
    assert RESULTS_FILE in str(err.value) and "line 2" in str(err.value) and "\n" not in str(err.value)
    (tmp_path / RESULTS_FILE).write_text("loss\n1\n")
    with pytest.raises(CascadeError, match="no epoch column"):
        Results(tmp_path, ["Lunate"]).start(after_epoch=1)


def test_tensorboard_is_silent_when_absent_and_used_when_present(tmp_path, monkeypatch, capfd):
    row = {"epoch": 2, "train_loss": 0.5, "val_carpal_dice": float("nan"), "dice/Lunate": 0.7, "val_s": None}
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as without the package: ImportError
    absent = TensorBoardScalars(tmp_path)
    absent.add(row)
    absent.close()
    assert not absent.used and list(tmp_path.iterdir()) == [] and capfd.readouterr() == ("", "")

    logged = []

    class Writer:
        def __init__(self, log_dir):
            logged.append(("dir", log_dir))

        def add_scalar(self, tag, value, step):
            logged.append((tag, value, step))

        def flush(self):
            pass

        def close(self):
            logged.append("closed")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=Writer))
    present = TensorBoardScalars(tmp_path)
    present.add(row)
    present.close()
    assert logged == [("dir", str(tmp_path)), ("stage2/train_loss", 0.5, 2), ("dice/Lunate", 0.7, 2), "closed"]
    assert TensorBoardScalars(tmp_path, enabled=False).used is False  # other ranks than 0 write nothing


def test_a_terminal_reporting_zero_columns_still_gets_a_bar():
    """A bare pseudo-terminal reports 0 x 0: tqdm's own width would be 0 and draw nothing."""
    import os

    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as stream:
            assert os.get_terminal_size(slave).columns == 0
            with EpochBar(4, "epoch 1/1", stream=stream) as bar:
                for i in range(4):
                    bar.step(2, 0.5 * (i + 1), 2 * (i + 1))
                stream.flush()
                drawn = os.read(master, 65536).decode()
        # tqdm redraws at most every mininterval, so which of the steps shows depends on the machine's speed;
        # what a 0-wide bar lacks is any drawing at all
        assert "epoch 1/1" in drawn and "/4" in drawn
    finally:
        os.close(master)
        os.close(slave)
