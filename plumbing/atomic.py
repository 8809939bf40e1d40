"""Write files so that a crash never leaves a half-written output behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from .errors import DataError
from .leftovers import owner_tag, remove_dead_dirs, remove_dead_files

_UMASK = os.umask(0o022)  # read once (setting it is the only way to read it), then put back
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block finishes. The temporary
    name carries this process's host and pid: the temporaries of killed writers of `path` are removed here.
    A write that fails for want of space (or any OS reason) names `path`, not the file system."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_files(path, path.suffix)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{owner_tag()}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.is_file():  # mkstemp makes it owner-only; give the result the mode any new file gets
            tmp.chmod(0o666 & ~_UMASK)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is not None and str(exc.filename) != str(tmp):  # another file's problem (an input): it names that file
            raise
        raise DataError(path, f"cannot write ({exc.strerror or exc}); the previous file, if any, is unchanged") from None
    finally:
        tmp.unlink(missing_ok=True)


def save_torch(obj, path: str | Path) -> None:
    """torch.save, atomically, through a Python file: a full disk is then an OSError that atomic_path names by
    `path` (torch's own writer, given a path, raises a RuntimeError naming nothing), and the previous file stays."""
    import torch

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        try:
            torch.save(obj, f)
        except RuntimeError as exc:  # torch's writer fails again on closing, hiding the OSError of the write
            if isinstance(exc.__context__, OSError):
                raise exc.__context__ from None
            raise


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def check_output(path: str | Path, inputs: Iterable[str | Path | None] = (), suffix: str | None = None) -> Path:
    """Before any work: an output must not replace one of the run's own inputs, must have the expected
    suffix, and its folder (or the nearest one that exists) must be writable, so a long run never fails at the
    very end. Returns the path."""
    path = Path(path)
    if suffix is not None and path.suffix.lower() != suffix:
        raise DataError(path, f"expected a {suffix} file to write")
    if path.is_dir():
        raise DataError(path, "is a folder; expected a file to write")
    for other in inputs:
        if other is not None and Path(other).exists() and path.exists() and path.samefile(other):
            raise DataError(path, "is one of this command's inputs; write the output elsewhere")
    folder = path.parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        raise DataError(path, f"cannot write into {folder}")
    return path


def replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished tmp folder to out; an existing out is swapped away first and deleted after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{owner_tag()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def partial_dir(out: Path) -> Path:
    """The temporary folder an output folder is built in (then moved by replace_dir); those that killed runs
    left beside `out` are removed first."""
    remove_dead_dirs(out)
    return out.parent / f".{out.name}.partial-{owner_tag()}"


@contextlib.contextmanager
def atomic_dir(out: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside `out`; it replaces `out` whole only if the block finishes."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        replace_dir(tmp, out)
    except OSError as exc:
        if exc.filename is not None and not str(exc.filename).startswith(str(tmp)):
            raise
        raise DataError(out, f"cannot write ({exc.strerror or exc}); the previous folder, if any, is unchanged") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
