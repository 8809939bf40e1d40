"""Whether output goes to a person at a terminal or to a log, and how wide that terminal is."""

from __future__ import annotations

import os
from typing import IO

FALLBACK_COLUMNS = 80  # a terminal that reports no width (a bare pseudo-terminal says 0) is drawn at the classic 80


def is_terminal(stream: IO | None) -> bool:
    """Whether stream is an interactive terminal; a closed or unusual stream counts as not one."""
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


def reported_columns(stream: IO) -> int | None:
    """The terminal's width as it reports it (0 for a bare pseudo-terminal); None when it cannot say."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, ValueError, OSError):  # io.StringIO, a closed file, not a terminal
        return None
