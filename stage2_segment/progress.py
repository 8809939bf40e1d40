"""A progress bar over one training epoch's batches, drawn only on a terminal.

On a terminal the bar shows batch i/n, the running loss, samples/s and the time left; anywhere else (a log
file, CI, a pipe) it draws nothing, so the epoch's one summary line from the trainer is all that appears and
no carriage return reaches the log.
"""

from __future__ import annotations

import sys
import time
from typing import IO

from plumbing.terminal import FALLBACK_COLUMNS, is_terminal, reported_columns

REFRESH_S = 0.5  # how often the loss and rate are brought up to date: each refresh reads the loss off the device


class EpochBar:
    """`with EpochBar(n, "epoch 3/30") as bar: ... bar.step(len(x), loss_sum, seen)` once per batch.

    loss_sum may be a tensor still on the GPU: it is read (one synchronisation) only when the bar refreshes,
    not at every step. world scales this process's samples/s to the whole job: every rank has its own equal
    share of the batches. enabled=False (another rank than 0) or a stream that is no terminal draws nothing."""

    def __init__(self, batches: int, label: str, world: int = 1, enabled: bool = True, stream: IO | None = None):
        stream = sys.stderr if stream is None else stream  # looked up now, so a redirected stderr is honoured
        self._bar = None
        if enabled and is_terminal(stream):
            from tqdm import tqdm

            # leave=False: the finished bar gives way to the trainer's one summary line for the epoch. A terminal
            # reporting 0 columns would get a bar 0 wide, i.e. nothing: it gets a fixed width instead
            sized = reported_columns(stream) != 0
            self._bar = tqdm(total=batches, desc=label, file=stream, unit="batch", leave=False, dynamic_ncols=sized,
                             ncols=None if sized else FALLBACK_COLUMNS, mininterval=REFRESH_S)
        self._world = world
        self._samples = 0
        self._start = time.perf_counter()
        self._next_refresh = self._start

    @property
    def drawing(self) -> bool:
        return self._bar is not None

    def step(self, samples: int, loss_sum, seen: int) -> None:
        """One batch done: samples in it; loss_sum / seen is the running mean loss."""
        if self._bar is None:
            return
        self._samples += samples
        now = time.perf_counter()
        last = self._bar.n + 1 == self._bar.total
        if now >= self._next_refresh or last:
            self._next_refresh = now + REFRESH_S
            rate = self._samples * self._world / max(now - self._start, 1e-9)
            self._bar.set_postfix_str(f"loss {float(loss_sum) / max(seen, 1):.4f}, {rate:.1f} samples/s",
                                      refresh=False)
        self._bar.update(1)
        if last:  # tqdm skips draws within mininterval: the finished epoch is always shown, if briefly
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> EpochBar:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # also on an error, so a traceback does not land in the middle of a bar
