import shutil

import pytest

from convert.synth import generate


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A small generated set in the real layout: 6 labelled patients (12 images) and 2 test patients."""
    root = tmp_path_factory.mktemp("synth")
    generate(root, patients=6, test_patients=2, size=192, seed=3)
    return root


@pytest.fixture
def train_copy(synth_root, tmp_path):
    """A private copy of the labelled set that a test may damage."""
    dst = tmp_path / "train"
    shutil.copytree(synth_root / "train", dst)
    return dst
