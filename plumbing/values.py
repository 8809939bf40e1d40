"""Values in error messages: range checks written one way, and long values shortened.

The checks raise ValueError with a message that starts with the key, as a config dataclass's __post_init__
needs: configs.build then prefixes the section (`augment.rotate: ...`) and names the file.
"""

from __future__ import annotations

import difflib
import math
from typing import Iterable, Sequence


MAX_EPOCHS = 100_000  # an epoch count past this is a typo (1e9), not a schedule, for either stage


def shorten(text: str, limit: int = 60) -> str:
    """text cut to at most limit characters, ending in '...' where it was cut."""
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def did_you_mean(word: str, choices: Iterable[str], prefix: str = "") -> str:
    """` (did you mean 'x'?)` naming the choice that word most likely misspells (difflib's closest, at least 60%
    alike; prefix written before it, e.g. a dotted section), or "" when none is close."""
    matches = difflib.get_close_matches(word, sorted(choices), n=1)
    return f" (did you mean {prefix + matches[0]!r}?)" if matches else ""


def check_range(key: str, value: float, lo: float = -math.inf, hi: float = math.inf, *, lo_open: bool = False,
                hi_open: bool = False, why: str = "") -> None:
    """ValueError `key: need lo <= key <= hi (why), got value` unless value lies within the bounds (< where
    open); an infinite bound is left out of the message."""
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if not (below or above or math.isnan(value)):
        return
    low = "" if lo == -math.inf else f"{lo} {'<' if lo_open else '<='} "
    high = "" if hi == math.inf else f" {'<' if hi_open else '<='} {hi}"
    if not low and high:  # `key < 0.5` reads better than `< 0.5` after the key
        need = f"{key}{high}"
    elif low and not high:
        need = f"{key} {'>' if lo_open else '>='} {lo}"
    else:
        need = f"{low}{key}{high}"
    raise ValueError(f"{key}: need {need}{f' ({why})' if why else ''}, got {value}")


def check_fields(obj, keys: Sequence[str], lo: float = -math.inf, hi: float = math.inf, **bounds) -> None:
    """check_range on each named field of a dataclass."""
    for key in keys:
        check_range(key, getattr(obj, key), lo, hi, **bounds)


def check_pair(key: str, pair: Sequence[float]) -> None:
    """A [lo, hi] setting: two numbers with lo <= hi."""
    if len(pair) != 2 or not pair[0] <= pair[1]:
        raise ValueError(f"{key}: need [lo, hi] with lo <= hi, got {list(pair)}")

