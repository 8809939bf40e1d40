"""A read-only or missing home (and no YOLO_CONFIG_DIR / MPLCONFIGDIR set) must not stop any command, not even
--help: the caches fall back to a private temporary folder, with one note."""

import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMPORTS = "import plumbing, ultralytics, matplotlib.pyplot, albumentations; import cascade.cli"


def _env(home, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if k not in ("YOLO_CONFIG_DIR", "MPLCONFIGDIR", "CASCADE_CACHE_DIR", "XDG_CACHE_HOME", "XDG_CONFIG_HOME")}
    return {**env, "HOME": str(home), "PYTHONPATH": ROOT, "TMPDIR": str(tmp_path / "tmp")}


def _run(args, env, prefix=()):
    return subprocess.run([*prefix, sys.executable, *args], env=env, cwd=ROOT, capture_output=True, text=True)


def _works(env, tmp_path, prefix=()):
    (tmp_path / "tmp").mkdir(exist_ok=True)
    for args in (["-m", "cascade.cli", "--help"], ["-m", "cascade.cli", "predict", "--help"], ["-c", IMPORTS]):
        done = _run(args, env, prefix)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "OSError" not in done.stderr and "Traceback" not in done.stderr
    assert "note: cannot write" in done.stderr and "caches go to" in done.stderr
    assert done.stderr.count("note: cannot write") == 1


def test_missing_home(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the home's parent folder should be")
    _works(_env(blocker / "home", tmp_path), tmp_path)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs unshare to mount a read-only home")
def test_read_only_home(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(home)],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip("no user namespaces here to mount a read-only home")
    # a read-only file system: even root cannot write there
    wrapper = ["unshare", "-rm", "sh", "-c", f'mount -t tmpfs -o ro tmpfs "{home}" && exec "$@"', "sh"]
    _works(_env(home, tmp_path), tmp_path, wrapper)
