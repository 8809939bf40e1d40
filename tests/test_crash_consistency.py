"""A stage 2 run killed at any step of an epoch's record (last.pt, best.pt, results.csv, results.png: killed
just before or just after each is published) resumes into a consistent run: every epoch's row once, best.pt
the best row's epoch with its score, no temporary file left behind."""

import os
import signal
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from cascade.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config", "configs/stage2_cpu.yaml", "input_size=64", "batch=4", "workers=0", "device=cpu", "folds=3",
        "decoder_channels=[16,16,16,16,16]", "name=k"]

# runs the CLI, SIGKILLed at the first publication (os.replace of a temporary onto it) of the named file
KILLER = """
import os, signal, sys
from pathlib import Path
target, when = sys.argv[1], sys.argv[2]
real = os.replace
def replace(src, dst, *args, **kwargs):
    hit = Path(dst).name == target
    if hit and when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *args, **kwargs)
    if hit and when == "after":
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from cascade.cli import main
main(sys.argv[3:])
"""


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("crops")


def _rows(run_dir):
    import csv

    with open(run_dir / "results.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("target,when", [("last.pt", "before"), ("last.pt", "after"), ("best.pt", "before"),
                                         ("best.pt", "after"), ("results.csv", "before"), ("results.png", "before")])
def test_killed_at_each_step_resumes_consistent(synth_root, tmp_path, cache, target, when):
    args = ["train-stage2", "--data", str(synth_root / "train"), *TINY, f"out={tmp_path}", f"cache_dir={cache}"]
    killed = subprocess.run([sys.executable, "-c", KILLER, target, when, *args, "epochs=2"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"},
                            capture_output=True, text=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run_dir = tmp_path / "k"
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        rerun = CliRunner().invoke(main, args + ["epochs=2"])
    finally:
        os.chdir(cwd)
    assert rerun.exit_code == 0, rerun.output
    rows = _rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2]  # every epoch once, none lost to the kill
    top = max(({"epoch": int(r["epoch"]), "val_carpal_dice": float(r["val_carpal_dice"])} for r in rows),
              key=lambda r: r["val_carpal_dice"])  # the first of equals, as best.pt keeps it
    best = torch.load(run_dir / "best.pt", weights_only=True)
    last = torch.load(run_dir / "last.pt", weights_only=True)
    assert best["epoch"] == top["epoch"] and best["best_score"] == pytest.approx(top["val_carpal_dice"], abs=1e-6)
    assert last["epoch"] == 2 and last["best_score"] == pytest.approx(top["val_carpal_dice"], abs=1e-6)
    assert "optimizer" not in best
    assert f"best checkpoint:            {run_dir / 'best.pt'}" in rerun.output
    assert not [p.name for p in run_dir.iterdir() if ".tmp" in p.name]  # the killed run's temporary removed
