"""User-facing errors: each names the file and the problem in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class CascadeError(Exception):
    """A mistake in the user's input or setup; the CLI prints it as one line and exits non-zero."""


class DataError(CascadeError):
    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset item, kept for reports instead of raised."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"
