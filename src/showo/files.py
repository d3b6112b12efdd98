"""Files read and written by path: why a path is not a readable file (`file_problem`), and files (and the files of
a saved directory) written atomically: a reader, or a run killed mid-write, sees the old file or the new one, never
half of one; and what is written gets the permissions a plain open / mkdir would give it.

Torch-free, so that the command line's output checks can import it without loading torch. Also the PNG bytes of an
image (`png_bytes`), which the command line writes and the server sends.
"""
from __future__ import annotations

import errno
import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from .errors import ConfigError, OutputError

if TYPE_CHECKING:
    from PIL import Image


def png_bytes(image: "Image.Image") -> bytes:
    """The PNG file of a PIL image, in memory (deterministic: no timestamps, no metadata chunks)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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


def write_file(path: Path, data: bytes, flag: str) -> None:
    """`data` written atomically to `path`, its directory created; failures are one-line `OutputError`s."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
    except OSError as e:
        raise OutputError(f"{flag} {path}: cannot write: {e.strerror or e}") from None


def with_default_mode(path: str | Path) -> Path:
    """`path` given the permissions a plain mkdir / open would have (tempfile makes private 0700 / 0600 ones, which
    would keep teammates from reading a run's results whatever their umask)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
    return Path(path)


def path_argument(value: object, name: str) -> Path:
    """`value`, a path argument called `name`, as a Path (a leading ~ expanded); a non-path, an empty string (which
    would silently mean the working directory) or a NUL byte is a one-line ConfigError."""
    if not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{name} must be a path, got {type(value).__name__}")
    text = os.fspath(value)
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ConfigError(f"{name} must be a non-empty path without NUL bytes, got {text!r}")
    return Path(text).expanduser()


def check_out_dir(out: Path, flag: str = "--out") -> None:
    """Refuse an output directory that cannot be one, before any work is done (nothing is created here)."""
    for parent in (out, *out.parents):
        if parent.is_symlink() and not parent.exists():
            raise OutputError(f"{flag} {out}: {parent} is a broken symbolic link")
        if parent.exists():
            if not parent.is_dir():
                raise OutputError(f"{flag} {out}: {parent} exists and is not a directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise OutputError(f"{flag} {out}: {parent} is not writable")
            return


def saved(directory: object, what: str, write: Callable[[Path], object]) -> Path:
    """`write(folder)` run on a temporary folder whose files then go into `directory` (`written_atomically`); the
    directory is checked first (`path_argument`), and an OS error is a one-line OutputError naming `what`."""
    directory = path_argument(directory, "directory")
    try:
        with written_atomically(directory) as tmp:
            write(tmp)
    except OSError as e:
        raise OutputError(f"cannot save {what} into {directory}: {e.strerror or e}") from None
    return directory


@contextmanager
def written_atomically(directory: Path) -> Iterator[Path]:
    """A temporary folder inside `directory` (made if missing) to fill. On success what it holds is renamed into
    `directory`, an entry at a time, replacing entries of the same name and keeping the others (a user's README, a
    training run's other files); on failure it is removed, with `directory` if this made it. Either way no reader
    sees a half-written file, and a failed write leaves `directory` as it was."""
    if directory.exists() and not directory.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{directory} is a file", str(directory))
    made = _make_directory(directory)
    try:
        tmp = with_default_mode(tempfile.mkdtemp(prefix=".showo-saving-", dir=directory))
    except BaseException:
        _remove_made(made)
        raise
    try:
        yield tmp
        _check_movable(tmp, directory)
        _move_into(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_made(made)
        raise
    shutil.rmtree(tmp, ignore_errors=True)


def _make_directory(directory: Path) -> list[Path]:
    """mkdir -p `directory`; the folders it made, deepest first."""
    missing = [p for p in (directory, *directory.parents) if not p.exists() and not p.is_symlink()]
    directory.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_made(made: list[Path]) -> None:
    for path in made:  # deepest first; a folder something else has written into since is kept
        try:
            path.rmdir()
        except OSError:
            break


def _check_movable(source: Path, target: Path) -> None:
    """Raise, before anything moves, where an entry would land on one of another kind (a file on a folder)."""
    for entry in source.iterdir():
        there = target / entry.name
        if entry.is_dir() and there.is_dir() and not there.is_symlink():
            _check_movable(entry, there)
        elif there.is_dir() and not there.is_symlink():
            raise IsADirectoryError(errno.EISDIR, f"{there} is a directory", str(there))
        elif entry.is_dir() and there.exists():
            raise NotADirectoryError(errno.ENOTDIR, f"{there} is a file", str(there))


def _move_into(source: Path, target: Path) -> None:
    """Rename every entry of `source` into `target` (config.json last: it marks a checkpoint complete); a folder
    that exists on both sides is merged the same way."""
    for entry in sorted(source.iterdir(), key=lambda e: (e.name == "config.json", e.name)):
        there = target / entry.name
        if entry.is_dir() and there.is_dir() and not there.is_symlink():
            _move_into(entry, there)
        else:
            os.replace(entry, there)


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
