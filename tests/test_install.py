"""A real install: the wheel carries the default configs, and an installed package finds them."""

import configparser
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SETUP = configparser.ConfigParser()
_SETUP.read(ROOT / "setup.cfg")
PACKAGES = _SETUP["options"]["packages"].split()
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", *PACKAGES)

pytest.importorskip("setuptools")  # the wheel is built without build isolation: no download

CHECK = """
import sys
from pathlib import Path
import importlib
for package in sys.argv[2:]:
    importlib.import_module(package)
from cascade.demo import load_demo_config
from configs import CONFIG_DIR
import convert
from stage1_detect.config import load_stage1_config
from stage2_segment.config import load_stage2_config
from synthetic_hands import load_synth_config
site = Path(sys.argv[1]).resolve()
assert site in Path(convert.__file__).resolve().parents, convert.__file__  # the installed copy, not the checkout
assert site in CONFIG_DIR.parents, CONFIG_DIR
load_synth_config(None, ())
load_stage1_config(None, ())
assert load_stage2_config(None, ()).input_size == 1024
demo = load_demo_config(None, ())
for name in (demo.stage1_config, demo.stage2_config, demo.fullhand_config):
    load_stage1_config(CONFIG_DIR / name, ()) if "stage1" in name else load_stage2_config(CONFIG_DIR / name)
print("configs from", CONFIG_DIR)
"""


def _run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, timeout=300, **kwargs)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_a_built_wheel_installs_with_its_default_configs(tmp_path):
    src = tmp_path / "src"  # built from a copy: building writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    _run(pip + ["wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index", "-w", str(tmp_path / "dist"),
                str(src)])
    [wheel] = (tmp_path / "dist").glob("*.whl")
    site = tmp_path / "site"
    _run(pip + ["install", "-q", "--no-deps", "--no-index", "--target", str(site), str(wheel)])
    assert sorted(p.name for p in (site / "configs").glob("*.yaml")) == \
        sorted(p.name for p in (ROOT / "configs").glob("*.yaml"))

    elsewhere = tmp_path / "elsewhere"  # neither the checkout nor its configs/ are reachable from here
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = _run([sys.executable, "-c", CHECK, str(site), *PACKAGES], cwd=elsewhere, env=env)
    assert "configs from" in out.stdout
    # a command that reads a default config (configs/synth.yaml) from the installed package
    _run([sys.executable, "-m", "cascade.cli", "synth", "--out", "gen", "--patients", "1", "--size", "128"],
         cwd=elsewhere, env=env)
    assert len(list((elsewhere / "gen" / "train" / "outputs_json").rglob("*.json"))) == 2
