"""One writer per output folder: `.NAME.lock` beside it, held with flock while the run lasts and naming its
owner (pid and host). A second run into the same folder is refused in one line; a lock left by a process that
died (flock is released with the process, the file stays) is taken over with a note."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import CascadeError, DataError
from .leftovers import HOST


def _note(text: str) -> None:
    print(text, file=sys.stderr)


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def run_lock(folder: str | Path, note: Callable[[str], None] = _note) -> Iterator[Path]:
    """Hold the folder's lock for the block; raises CascadeError naming the folder and its owner when another
    process holds it."""
    folder = Path(folder)
    path = lock_path(folder)
    made = _make_parents(path.parent)
    try:
        fd = _acquire(folder, path)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        previous = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if previous:  # the lock file of an owner that ended without removing it: it died
            note(f"note: {folder}: taking over the lock of a run that is no longer running ({_owner(previous)})")
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": HOST, "started": time.time()}).encode())
            os.fsync(fd)
        except OSError as exc:  # a full disk: the folder the run was to write is named
            raise DataError(folder, f"cannot write its lock file {path.name} ({exc.strerror or exc})") from None
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before the flock goes: nobody can lock this file while it is still ours
        os.close(fd)
        _remove_empty(made)  # a run that failed before writing leaves no folder behind


def _make_parents(folder: Path) -> list[Path]:
    """mkdir -p, returning the folders it made (deepest last)."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    for f in reversed(missing):
        f.mkdir(exist_ok=True)
    return list(reversed(missing))


def _remove_empty(made: list[Path]) -> None:
    for f in reversed(made):
        try:
            f.rmdir()
        except OSError:  # not empty: the run wrote there
            return


def _acquire(folder: Path, path: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = _owner(os.read(fd, 4096).decode("utf-8", "replace"))
            os.close(fd)
            raise CascadeError(f"{folder}: another run is writing it ({owner}; lock {path}); wait for it to end, "
                               "or write elsewhere") from None
        # the owner may have removed the file between our open and our flock: lock the file that is there
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)


def _owner(text: str) -> str:
    try:
        doc = json.loads(text)
        return f"process {int(doc['pid'])} on {doc['host']}"
    except (ValueError, KeyError, TypeError):
        return "owner unknown"
