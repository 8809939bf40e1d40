"""ultralytics sets torch's CPU threads to (cores - 1) whenever it picks the CPU (`select_device`, called by every
train and predict): on a 2-core machine that halves every later CPU step of the process, stage 2 included.
These keep the caller's thread count."""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def threads_kept():
    """Whatever ultralytics does inside, torch's thread count is the caller's again afterwards."""
    threads = torch.get_num_threads()
    try:
        yield threads
    finally:
        torch.set_num_threads(threads)


def all_threads_while_training(threads: int):
    """An on_train_start callback: on the CPU ultralytics loads data on the main thread between the steps (it
    sets workers=0 there), so the core it keeps free for loader workers would sit idle; give it back."""
    def callback(trainer) -> None:
        if trainer.device.type == "cpu":
            torch.set_num_threads(threads)
    return callback
