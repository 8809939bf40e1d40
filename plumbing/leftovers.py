"""Temporary outputs named by their writer (host and pid), so that a later run can tell a dead writer's
leftovers (a killed run's half-written checkpoint, a partial convert folder: gigabytes at real size) from a
live writer's, and remove them."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

HOST = socket.gethostname().replace("/", "_") or "localhost"


def owner_tag() -> str:
    """This process, as it appears in its temporary names: host-pid."""
    return f"{HOST}-{os.getpid()}"


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OverflowError:
        return False
    return True


def is_dead(tag: str) -> bool:
    """Whether host-pid names a process of this host that no longer runs (another host's: never known)."""
    host, _, pid = tag.rpartition("-")
    return host == HOST and pid.isdecimal() and int(pid) != os.getpid() and not pid_alive(int(pid))


def remove_dead_files(path: Path, suffix: str) -> list[Path]:
    """The temporary files plumbing.atomic made for `path` (.NAME.HOST-PID.RANDOM.tmpSUFFIX) whose writer died."""
    prefix, end = f".{path.name}.", f".tmp{suffix}"
    removed = []
    try:
        candidates = list(path.parent.glob(f".{_escape(path.name)}.*{_escape(end)}"))
    except OSError:
        return []
    for tmp in candidates:
        middle = tmp.name[len(prefix):-len(end)]
        tag = middle.rpartition(".")[0]
        if tmp.is_file() and is_dead(tag):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def remove_dead_dirs(out: Path, kinds: tuple[str, ...] = ("partial", "old")) -> list[Path]:
    """The temporary folders beside `out` (.NAME.partial-HOST-PID, .NAME.old-HOST-PID) whose writer died."""
    removed = []
    for kind in kinds:
        prefix = f".{out.name}.{kind}-"
        try:
            candidates = list(out.parent.glob(_escape(prefix) + "*"))
        except OSError:
            continue
        for tmp in candidates:
            if tmp.is_dir() and not tmp.is_symlink() and is_dead(tmp.name[len(prefix):]):
                shutil.rmtree(tmp, ignore_errors=True)
                removed.append(tmp)
    return removed


def _escape(name: str) -> str:
    """A literal file name in a glob pattern."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)
