"""What a killed run leaves (a half-written temporary file, a partial output folder) is removed by the next run
of the same command, but only when its writer is dead: a live writer's temporaries stay."""

import subprocess
import sys

import pytest

from convert.yolo import convert_to_yolo
from plumbing.atomic import write_text
from plumbing.leftovers import HOST


@pytest.fixture
def dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def live_pid():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    yield proc.pid
    proc.kill()
    proc.wait()


def test_atomic_write_removes_dead_writers_temporaries(tmp_path, dead_pid, live_pid):
    dead = tmp_path / f".x.csv.{HOST}-{dead_pid}.k2j3h4.tmp.csv"
    live = tmp_path / f".x.csv.{HOST}-{live_pid}.a8b7c6.tmp.csv"
    other_host = tmp_path / f".x.csv.elsewhere-{dead_pid}.q1w2e3.tmp.csv"
    other_file = tmp_path / f".y.csv.{HOST}-{dead_pid}.z9z9z9.tmp.csv"
    for path in (dead, live, other_host, other_file):
        path.write_text("half a row")
    write_text(tmp_path / "x.csv", "a,b\n")
    assert (tmp_path / "x.csv").read_text() == "a,b\n"
    assert not dead.exists()
    assert live.exists() and other_host.exists() and other_file.exists()  # not ours to judge
    assert not [p for p in tmp_path.glob(".x.csv.*") if p not in (live, other_host)]  # and our own is gone


def test_convert_removes_dead_conversions_partial_folders(synth_root, tmp_path, dead_pid, live_pid):
    out = tmp_path / "yolo"
    dead = tmp_path / f".yolo.partial-{HOST}-{dead_pid}"
    old = tmp_path / f".yolo.old-{HOST}-{dead_pid}"
    live = tmp_path / f".yolo.partial-{HOST}-{live_pid}"
    for folder in (dead, old, live):
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "big.png").write_bytes(b"\0" * 1000)
    convert_to_yolo(synth_root / "train", out, folds=3, fold=0, workers=1)
    assert (out / "data.yaml").is_file()
    assert not dead.exists() and not old.exists() and live.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "yolo"])
