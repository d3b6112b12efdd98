"""Files read and written by path: why a path is not a readable file (`file_problem`), and files written
atomically: a reader, or a run killed mid-write, sees the old file (or directory) or the new one, never half of
one; and what is written gets the permissions a plain open / mkdir would give it.

Torch-free, so that the command line's output checks can import it without loading torch.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def staged_file(path: Path, data: bytes) -> str:
    """`data` in a temporary file beside `path`, on disk (fsync) and with the umask's permissions; the caller
    renames it into place or removes it (`remove_quietly`)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        with_default_mode(tmp)
    except BaseException:
        remove_quietly(tmp)
        raise
    return tmp


def remove_quietly(path: str | Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and `os.replace`: a reader, or a
    run killed mid-write, sees the old file or the new one, never half of one."""
    tmp = staged_file(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise


def with_default_mode(path: str | Path) -> Path:
    """`path` given the permissions a plain mkdir / open would have (tempfile makes private 0700 / 0600 ones, which
    would keep teammates from reading a run's results whatever their umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
    return Path(path)


@contextmanager
def written_atomically(directory: Path) -> Iterator[Path]:
    """A temporary sibling of `directory` to fill. On success it takes `directory`'s place (an existing one is
    moved aside first, then removed); on failure it is removed: a reader never sees a half-written directory."""
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = with_default_mode(tempfile.mkdtemp(prefix=f".{directory.name}-", dir=directory.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = directory.with_name(f".{directory.name}.old")
    if directory.exists():
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


def file_problem(path: Path, kind: str) -> str | None:
    """None for a regular file; else what `path` is instead, worded for "<what> <path> <problem>" ("is a directory,
    not <kind>"). A device, pipe or socket is refused: reading one may never end (/dev/zero, a FIFO)."""
    if path.is_file():
        return None
    if path.is_dir():
        return f"is a directory, not {kind}"
    if path.exists():
        return "is a device, pipe or socket, not a regular file"
    return "is a broken symbolic link" if path.is_symlink() else "not found"
