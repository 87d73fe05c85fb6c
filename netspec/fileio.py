"""Writing files so that nothing half-written is ever seen, and nothing at the path is
turned into something else. What is there decides how a write goes:

- nothing, or a regular file: a temp file beside it, flushed to disk, then renamed onto it
  in one step; a failure leaves the old file as it was. A new file gets the mode any other
  tool's output would (0666 less the umask); a replaced one keeps its permission bits.
- a symlink: followed, and the file it names is written by these rules; the link stays a
  link. A dangling link is refused: making the file it names, somewhere else, is not what
  ``-o`` asks for, and replacing the link with a file would lose it.
- a character device or a FIFO (``/dev/null``, ``/dev/stdout``, a named pipe): opened for
  writing as it is and the bytes streamed into it, with no temp file beside it and no
  rename. A writer that needs a path to fill (a library's ``save``) fills one in a private
  temp directory first, so the stream gets complete output or none. A FIFO waits for its
  reader, as it would for ``cat > fifo``.
- a link through a process's open files to a regular file (``-o /dev/stdout > out``):
  appended to in place, as the process's own output would be; replacing the file would
  cut it off from the shell that holds it open.
- a directory, a block device, a socket: refused, naming the path and what it is.

Every refusal and every filesystem failure (read-only, full, a file where a directory
should be) is an `OutputError` naming the path and the reason.

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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO

from netspec.errors import OutputError

TMP_SUFFIX = ".tmp"  # temp files are `.NAME.XXXX.tmp`, so a leftover is easy to find
CRASH_ENV = "NETSPEC_CRASH_AT"
CHUNK_BYTES = 1 << 20  # what one write into a device or FIFO carries
_commits = 0

PathLike = str | os.PathLike[str]

_REFUSED = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


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


@dataclass(frozen=True)
class Target:
    """Where a write to ``given`` goes: ``path`` (``given``, or the regular file its
    symlink names) and ``mode``, the ``st_mode`` of what is there (None: nothing yet)."""

    given: Path
    path: Path
    mode: int | None
    open_file: bool = False  # a link to a process's open file (/dev/stdout > file)

    @property
    def stream(self) -> bool:
        """A character device, a FIFO, or a file this process has open as its standard
        output (``-o /dev/stdout > file``): written in place, never replaced."""
        special = self.mode is not None and (stat.S_ISCHR(self.mode) or stat.S_ISFIFO(self.mode))
        return special or self.open_file


def output_target(path: PathLike) -> Target:
    """What a write to ``path`` will do (see the module's docstring), found without opening
    anything; an OutputError for what netspec refuses to write (nothing is touched)."""
    given = Path(path)
    try:
        link = stat.S_ISLNK(os.lstat(given).st_mode)
        mode = os.stat(given).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(given):
            raise OutputError(
                f"cannot write {given}: it is a symlink to {os.readlink(given)}, "
                "which does not exist",
                hint="create the file it names, or remove the link",
            ) from None
        return Target(given, given, None)  # make_dirs says why, if a parent is a file
    except OSError as e:  # a loop of links, a directory that cannot be searched
        raise output_error(given, e) from None
    for test, words in _REFUSED:
        if test(mode):
            what = f"a symlink to {words}" if link else words
            raise OutputError(f"cannot write {given}: it is {what}, not a file")
    if not link or not stat.S_ISREG(mode):
        return Target(given, given, mode)  # a stream opens through its link: /dev/stdout
    if _through_open_file(given):  # the shell's `> file` behind /dev/stdout: write into it
        return Target(given, given, mode, open_file=True)
    return Target(given, _link_target(given), mode)


def _through_open_file(link: Path, hops: int = 40) -> bool:
    """Whether following ``link`` passes through a process's file descriptors
    (``/proc/PID/fd/N``, ``/dev/fd/N``): the file is open, and replacing it would cut it
    off from whoever holds it (the shell that redirected this process's output)."""
    here = link
    for _ in range(hops):
        text = str(here)
        if text.startswith(("/proc/", "/dev/fd/")) and "/fd/" in text:
            return True
        if not here.is_symlink():
            return False
        here = Path(os.path.join(os.path.dirname(here), os.readlink(here)))
    return False


def _link_target(link: Path) -> Path:
    """The path of the regular file ``link`` names, checked to be that same file."""
    real = Path(os.path.realpath(link))
    try:
        same = os.path.samestat(os.stat(real), os.stat(link))
    except OSError:
        same = False
    if not same:  # a /proc/PID/fd link to a deleted file, or a link changed meanwhile
        raise OutputError(f"cannot write {link}: the file it links to has no path to write")
    return real


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temp path to fill for ``path``; on a clean exit the file is delivered (renamed
    onto a regular file, streamed into a device or FIFO), on an exception it is removed.
    OSErrors become OutputError."""
    target = output_target(path)
    with (_spooled if target.stream else _replacing)(target) as tmp:
        yield tmp


@contextmanager
def _replacing(target: Target) -> Iterator[Path]:
    """A temp file beside ``target.path``: fsynced, given its mode and renamed onto it."""
    path = target.path
    make_dirs(path.parent)
    mode = 0o666 & ~umask() if target.mode is None else stat.S_IMODE(target.mode) & 0o777
    try:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
        os.close(fd)
    except OSError as e:
        raise output_error(target.given, e) from None
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        commit_point()
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        raise output_error(target.given, e) from None
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _spooled(target: Target) -> Iterator[Path]:
    """A temp file in a private temp directory (never beside a device); once filled, its
    bytes are streamed into ``target``."""
    try:
        with tempfile.TemporaryDirectory(prefix="netspec-") as folder:
            tmp = Path(folder) / f".{target.path.name}{TMP_SUFFIX}"
            tmp.touch(mode=0o600)
            yield tmp
            with open(tmp, "rb") as f:
                _stream(target, iter(partial(f.read, CHUNK_BYTES), b""))
    except OSError as e:
        raise output_error(target.given, e) from None


def _stream(target: Target, chunks: Iterable[bytes]) -> None:
    """Write ``chunks`` into the device or FIFO at ``target.path``, opened as it is: no
    O_CREAT or O_TRUNC, so nothing is made or cut; it must still be a device or FIFO (or
    the open file behind ``/dev/stdout``, appended to)."""
    flags = os.O_WRONLY | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    if target.open_file:
        flags |= os.O_APPEND  # after what the redirection already holds, as fd 1 would
    fd = os.open(target.path, flags)
    try:
        now = Target(target.given, target.path, os.fstat(fd).st_mode, target.open_file)
        if not now.stream:
            raise OutputError(f"cannot write {target.given}: it changed while being opened")
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


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
    """Have ``write`` fill a temp file, then deliver it to ``path`` (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        write(tmp)


def write_bytes(path: PathLike, data: bytes) -> None:
    """``data`` into ``path``: atomically onto a file, straight into a device or FIFO."""
    target = output_target(path)
    if not target.stream:
        with _replacing(target) as tmp:
            tmp.write_bytes(data)
        return
    try:
        _stream(target, (data,))
    except OSError as e:
        raise output_error(target.given, e) from None


def write_text(path: PathLike, text: str) -> None:
    """``text`` as UTF-8, its newlines as text mode writes them, by `write_bytes`."""
    write_bytes(path, text.replace("\n", os.linesep).encode("utf-8"))
