"""Threads over a sequence without holding all of it: the loaders' and writers' one pool pattern."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator, Sequence


def bounded_map(fn: Callable, items: Sequence, workers: int) -> Iterator:
    """fn over items on threads, results in order, at most 2 * workers in flight (decoded 2048 images are
    16 MB each; an unbounded map would hold the whole dataset in memory)."""
    with ThreadPoolExecutor(max(1, workers)) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * max(1, workers):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
