"""The GPU code paths' logic, checked on the CPU: which device each torchrun process takes."""

import pytest
import torch

from plumbing.errors import CascadeError
from stage2_segment import distributed


@pytest.fixture
def torchrun(monkeypatch):
    """The environment torchrun gives its second of two processes."""
    for key, value in {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1",
                       "MASTER_PORT": "29999"}.items():
        monkeypatch.setenv(key, value)


@pytest.mark.parametrize("device", ["cuda:0", "0", 0, "CUDA:1"])
def test_an_explicit_gpu_under_torchrun_with_several_processes_is_refused(torchrun, device):
    with pytest.raises(CascadeError, match="device=cuda .*CUDA_VISIBLE_DEVICES"):
        distributed.setup(device)
    assert not torch.distributed.is_initialized()


def test_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    for preference in ("cuda", None, "auto"):
        assert distributed.pick_device(preference, 3) == torch.device("cuda", 3)
    assert chosen == [torch.device("cuda", 3)] * 3


def test_one_process_keeps_the_gpu_it_was_given(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    assert distributed.pick_device("cuda:2", 0) == torch.device("cuda", 2)
    assert distributed.pick_device(1, 0) == torch.device("cuda", 1)


def test_nccl_is_told_each_process_gpu(torchrun, monkeypatch):
    """Left to guess, NCCL warned on an H200 that a guessed rank-to-GPU mapping can hang."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    monkeypatch.setattr(distributed, "check_available", lambda device, preference: None)
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)

    def init_process_group(backend, rank, world_size, device_id=None):  # torch >= 2.3's keywords
        calls.append((backend, {"rank": rank, "world_size": world_size, "device_id": device_id}))

    monkeypatch.setattr(torch.distributed, "init_process_group", init_process_group)
    dist, device = distributed.setup("cuda")
    assert device == torch.device("cuda", 1)
    assert calls == [("nccl", {"rank": 1, "world_size": 2, "device_id": torch.device("cuda", 1)})]


def test_validation_streams_its_crops(monkeypatch):
    """The fold's crops are read a few batches ahead of the network, never all before the first forward pass."""
    import numpy as np

    from configs import CONFIG_DIR
    from stage2_segment import validation
    from stage2_segment.config import load_stage2_config

    loads, at_first_forward = [], []

    class Entry:
        region, bent = (0, 0, 8, 8), False

        def crop_image(self, box):
            return np.zeros((8, 8), np.uint8)

        def crop_masks(self, classes, box, packed=False):
            return np.zeros((8, 8, (len(classes) + 7) // 8) if packed else (len(classes), 8, 8), np.uint8)

    class Store:
        def get(self, item):
            loads.append(item)
            return Entry()

    def forward(net, crops, *args, **kwargs):
        at_first_forward.append(at_first_forward[0] if at_first_forward else len(loads))
        return [torch.zeros(29, 8, 8) for _ in crops]

    monkeypatch.setattr(validation, "predict_crops", forward)
    cfg = load_stage2_config(CONFIG_DIR / "stage2_cpu.yaml", ["val_batch=4", "workers=1"])
    dice = validation.validate(torch.nn.Identity(), list(range(40)), Store(), cfg, torch.device("cpu"), distributed.Dist())
    assert len(loads) == 40 and dice.counts.sum() == 40
    assert at_first_forward[0] <= cfg.val_batch + 2 * cfg.workers  # a batch, plus what the readers keep ahead


@pytest.mark.parametrize("processes, cores, want", [(None, 16, 15), ("4", 16, 3), ("8", 4, 0)])
def test_default_workers_share_the_machines_cores_among_its_processes(monkeypatch, processes, cores, want):
    """workers: null -> the cores torchrun's processes on this machine share, one left to each main loop (a fixed
    8 per process oversubscribed 16 cores with 4 GPUs)."""
    if processes:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", processes)
    else:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(distributed.os, "sched_getaffinity", lambda _: set(range(cores)), raising=False)
    assert distributed.default_workers() == want


def test_the_label_bit_table_is_built_once_per_device():
    """torch.tensor(..., device=cuda) on every step is a blocking copy: the table is kept per device."""
    from stage2_segment.data import _bits

    assert _bits(torch.device("cpu")) is _bits(torch.device("cpu"))
