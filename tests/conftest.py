import shutil
import socket

import pytest

from synthetic_hands import generate


LOOPBACK = {"localhost", "127.0.0.1", "::1", None, ""}


@pytest.fixture(scope="session", autouse=True)
def no_network():
    """Nothing at run time may need the internet: in every test, a lookup of or connection to a host beyond
    this machine fails the test (this machine's own name and its addresses stay allowed, for torch.distributed's
    rendezvous). Subprocesses are not covered."""
    real_lookup, real_connect = socket.getaddrinfo, socket.socket.connect
    names, addresses = LOOPBACK | {socket.gethostname()}, set(LOOPBACK)

    def lookup(host, *args, **kwargs):
        if host not in names:
            pytest.fail(f"a test reached for the network: lookup of {host}")
        found = real_lookup(host, *args, **kwargs)
        addresses.update(info[4][0] for info in found)  # what this machine's names resolve to is this machine
        return found

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in addresses \
                and not str(address[0]).startswith("127."):
            pytest.fail(f"a test reached for the network: connection to {address}")
        return real_connect(sock, address)

    socket.getaddrinfo, socket.socket.connect = lookup, connect
    yield
    socket.getaddrinfo, socket.socket.connect = real_lookup, real_connect


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


@pytest.fixture(scope="session")
def yolo_set(synth_root, tmp_path_factory):
    from convert.yolo import convert_to_yolo

    return convert_to_yolo(synth_root / "train", tmp_path_factory.mktemp("yolo") / "set", folds=3, fold=0, workers=2).out


@pytest.fixture(scope="session")
def stage1_run(yolo_set, tmp_path_factory):
    """A tiny stage 1 model: one epoch at 128 px on the CPU (seconds). It detects little; the tests check the
    plumbing, shapes and fallbacks, not accuracy."""
    from stage1_detect.config import load_stage1_config
    from stage1_detect.train import train_stage1

    runs = tmp_path_factory.mktemp("runs")
    cfg = load_stage1_config(None, ["model=yolo11n-seg", "epochs=1", "imgsz=128", "batch=4", "device=cpu",
                                    "workers=0", "amp=false", "plots=false", f"project={runs}"])
    return train_stage1(yolo_set, cfg)


@pytest.fixture(scope="session")
def stage2_run(synth_root, yolo_set, tmp_path_factory):
    """A tiny stage 2 checkpoint trained on the same held-out split as stage1_run (one epoch, 64 px)."""
    from configs import CONFIG_DIR
    from stage2_segment.config import load_stage2_config
    from stage2_segment.train import train_stage2

    tmp = tmp_path_factory.mktemp("stage2run")
    cfg = load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml", [
        "epochs=1", "input_size=64", "batch=4", "workers=0", "device=cpu", "decoder_channels=[16,16,16,16,16]",
        f"folds_file={yolo_set / 'folds.json'}", "fold=0", f"out={tmp / 'runs'}", f"cache_dir={tmp / 'cache'}"])
    return train_stage2(synth_root / "train", cfg, log=lambda _: None)
