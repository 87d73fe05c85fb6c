"""Writing files so that nothing half-written is ever seen: a temp file beside the target,
flushed to disk, then renamed onto it in one step. A failure leaves the old file as it was.

Files get the mode any other tool's output would (0666 less the umask), and every
filesystem failure (read-only, full, a file where a directory should be) is an
`OutputError` naming the path and the system's reason.

Each rename is a *commit*. For the tests that kill a run at every commit, setting
``NETSPEC_CRASH_AT=N`` makes the process SIGKILL itself just before its Nth commit;
nothing else reads it.
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from netspec.errors import OutputError

TMP_SUFFIX = ".tmp"  # temp files are `.NAME.XXXX.tmp`, so a leftover is easy to find
CRASH_ENV = "NETSPEC_CRASH_AT"
_commits = 0

PathLike = str | os.PathLike[str]


def commit_point() -> None:
    """Count a commit; exit here if ``NETSPEC_CRASH_AT`` names this one (tests only)."""
    global _commits
    _commits += 1
    if os.environ.get(CRASH_ENV) == str(_commits):
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
        os._exit(128 + signal.SIGTERM)  # where SIGKILL does not exist, or is not immediate


def umask() -> int:
    """The process's umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def output_error(path: PathLike, e: OSError) -> OutputError:
    """An OutputError naming ``path`` and the system's reason for ``e``."""
    return OutputError(f"cannot write {path}: {e.strerror or e}")


def check_dir(path: PathLike) -> Path:
    """``path``, if it is a directory or could be made one (nothing on the way is a file)."""
    directory = Path(path)
    for place in (directory, *directory.parents):
        if place.exists() or place.is_symlink():
            if not place.is_dir():
                raise OutputError(f"cannot write {directory}: {place} is not a directory")
            break
    return directory


def make_dirs(path: PathLike) -> Path:
    """``mkdir -p path``, or an OutputError saying why not."""
    directory = check_dir(path)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise output_error(directory, e) from None
    return directory


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temp path in `path`'s directory; on a clean exit it is fsynced and renamed onto
    `path`, on an exception it is removed. OSErrors become OutputError."""
    target = Path(path)
    make_dirs(target.parent)
    try:
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
    except OSError as e:
        raise output_error(target, e) from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~umask())
        commit_point()
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except OSError as e:
        raise output_error(target, e) from None
    finally:
        tmp.unlink(missing_ok=True)


def fsync_dir(directory: Path) -> None:
    """Flush a directory's entries (a rename in it) to disk, where the platform allows."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_regular(path: PathLike) -> BinaryIO:
    """``path`` opened for reading in binary if it is a regular file. A FIFO, a device or a
    directory is refused with an OSError ("not a regular file") without waiting on it: the
    open does not block (O_NONBLOCK), and nothing is read from what is not a file."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        regular = stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        os.close(fd)
        raise
    if not regular:
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")


def read_capped(path: PathLike, cap: int) -> bytes:
    """A regular file's bytes, at most ``cap`` of them (the size is counted while reading,
    never taken from ``stat``); OSError for a FIFO, a device or a directory, ValueError for
    a file over the cap."""
    with open_regular(path) as f:
        data = f.read(cap + 1)
    if len(data) > cap:
        raise ValueError(f"more than {cap:,} bytes")
    return data


def write_atomic(path: PathLike, write: Callable[[Path], None]) -> None:
    """Have `write` fill a temp file, then move it onto `path` in one rename."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_bytes(path: PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
