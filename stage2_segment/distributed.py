"""Multi-GPU through torchrun (PyTorch DDP): one process per device; rank 0 alone writes files.

Started by torchrun (RANK, WORLD_SIZE and MASTER_ADDR in the environment), training joins a process group,
even a group of one, so that `torchrun --nproc_per_node=1` on a CPU (gloo) runs the very code a multi-GPU
run does. Started plainly, it is one process and none of this applies.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

from plumbing.devices import check_available
from plumbing.errors import CascadeError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    enabled: bool = False   # a process group exists (started by torchrun)
    owner: bool = False     # this run created it, so it destroys it

    @property
    def main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR"))


def requested_device(preference: str | int | None) -> torch.device:
    """What a device setting asks for, before checking it exists: null / 'auto' -> cuda if there is a GPU, else
    cpu; `0` (as ultralytics takes it) -> cuda:0; an index stays as given."""
    if preference in (None, "", "auto"):
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if isinstance(preference, int) or str(preference).isdecimal():
        preference = f"cuda:{int(preference)}"
    try:
        return torch.device(str(preference).strip().lower())
    except RuntimeError:
        raise CascadeError(f"device {preference!r}: expected cpu, cuda or cuda:N") from None


def pick_device(preference: str | int | None, local_rank: int) -> torch.device:
    """null -> this process's GPU when there is one, else the CPU; 'cuda' means this process's GPU."""
    device = requested_device(preference)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise CascadeError(f"device {preference!r}: no CUDA GPU here (use device=cpu)")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    check_available(device, preference)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def setup(preference: str | int | None) -> tuple[Dist, torch.device]:
    if not launched_by_torchrun():
        return Dist(), pick_device(preference, 0)
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world > 1 and requested_device(preference).index is not None:
        # every process would take that one GPU (NCCL: "duplicate GPU"); torchrun gives each its own
        raise CascadeError(f"device={preference} under torchrun with {world} processes would put all of them on "
                           f"one GPU: use device=cuda (each process takes the GPU of its local rank) and choose "
                           f"the GPUs with CUDA_VISIBLE_DEVICES")
    device = pick_device(preference, local_rank)
    owner = not tdist.is_initialized()
    if owner:
        # bound to its GPU, NCCL need not guess each rank's device (a guess that can hang, seen on an H200)
        bound = {"device_id": device} if device.type == "cuda" and _takes_device_id() else {}
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world, **bound)
    return Dist(rank, world, local_rank, True, owner), device


def _takes_device_id() -> bool:
    return "device_id" in inspect.signature(tdist.init_process_group).parameters  # torch >= 2.3


def teardown(dist: Dist) -> None:
    if dist.owner and tdist.is_initialized():
        tdist.destroy_process_group()


def barrier(dist: Dist) -> None:
    if dist.enabled:
        tdist.barrier()


def default_workers() -> int:
    """Loader workers per process when the config leaves them open: the cores this process may use, shared by
    the processes torchrun started on this machine, one left to each process's own loop."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, cores // int(os.environ.get("LOCAL_WORLD_SIZE", 1)) - 1)


def all_sum(dist: Dist, values: torch.Tensor) -> torch.Tensor:
    """Sum of a float64 CPU tensor over all processes (moved to the device nccl needs)."""
    if not dist.enabled:
        return values
    on = values.to("cuda") if tdist.get_backend() == "nccl" else values.clone()
    tdist.all_reduce(on)
    return on.cpu()
