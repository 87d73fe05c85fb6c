"""load: parse the spec and every file it `use`s, in the order they are read.

A `use` that leaves the spec's directory (without --allow-outside) or loops back is
refused here. The text of a `use`d file comes from the state's reader: by default the
disk, where every read is bounded: only regular files are opened (a FIFO, a device or a
directory is refused without blocking on it), and at most `max_file_bytes` are read,
whatever size the file claims. A language server passes its own reader, so that an
unsaved buffer is what gets checked.
"""

from __future__ import annotations

import os
import stat
from functools import partial
from pathlib import Path

from netspec.diagnostics import Collector, Diagnostic, Sources, Span, SpecError, display_path
from netspec.limits import Limits
from netspec.passes.state import CompileState, Pass, Reader
from netspec.syntax import ast
from netspec.syntax.parser import parse

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)
_TOO_LARGE_HINT = "raise it with --max-file-bytes if it is meant to be this large"


def _kind(mode: int) -> str:
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


class Unreadable(Exception):
    """A file whose text cannot be had, as a reader says it: a code (E101: unreadable,
    E102: too large), the message and a hint. The loader places it at the `use`."""

    def __init__(self, code: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint

    def at(self, span: Span) -> Diagnostic:
        return Diagnostic(self.code, self.message, span, hint=self.hint)


def _cannot(path: Path, reason: str) -> Unreadable:
    return Unreadable("E101", f"cannot read '{display_path(path)}': {reason}")


def _too_large(path: Path, size: int | None, limit: int) -> Unreadable:
    shown = display_path(path)
    if size is not None:
        return Unreadable(
            "E102", f"'{shown}' is {size:,} bytes; the limit is {limit:,}", _TOO_LARGE_HINT
        )
    return Unreadable(
        "E102", f"'{shown}' holds more than the limit of {limit:,} bytes", _TOO_LARGE_HINT
    )


def _read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. The limit holds while reading
    (at most `limit + 1` bytes are read), whatever size the file claims."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as e:
        raise _cannot(path, e.strerror or str(e)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _cannot(path, f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise _too_large(path, info.st_size, limit)
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise _too_large(path, None, limit)  # it grew, or said less than it holds
        return b"".join(chunks)
    except OSError as e:
        raise _cannot(path, e.strerror or str(e)) from None
    finally:
        os.close(fd)


def read_text(path: Path, limits: Limits) -> str:
    """The UTF-8 text of the regular file at `path`, of at most `limits.max_file_bytes`;
    Unreadable (E101, E102) otherwise."""
    data = _read_bytes(path, limits.max_file_bytes)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Unreadable("E101", f"cannot read '{display_path(path)}' as UTF-8 text: {e}") from None


def disk_reader(limits: Limits) -> Reader:
    """The reader `load` uses when the request names none: `read_text` within `limits`."""
    return partial(read_text, limits=limits)


def read_source(path: Path, limits: Limits, span: Span | None = None) -> str:
    """The UTF-8 text of a spec file; SpecError (E101, E102) located at `span` (the `use`)."""
    try:
        return read_text(path, limits)
    except Unreadable as e:
        raise SpecError([e.at(span or Span(str(path), 1, 1, 1, 1))]) from None


class _Loader:
    def __init__(self, root_dir: Path, read: Reader, limits: Limits, allow_outside: bool) -> None:
        self.root_dir = root_dir
        self.read = read
        self.limits = limits
        self.allow_outside = allow_outside
        self.items: list[ast.Item] = []
        self.comments: list[ast.Comment] = []
        self.sources = Sources()
        self.errors = Collector()
        self.loaded: set[Path] = set()

    def load_text(self, text: str, file: str, stack: tuple[Path, ...]) -> None:
        text = text.removeprefix("\ufeff")  # a UTF-8 byte order mark (Windows editors)
        self.sources.texts[file] = text
        module = parse(text, file, self.limits)
        self.comments += module.comments
        for item in module.items:
            if isinstance(item, ast.Use):
                self._use(item, Path(file).parent, stack)
            else:
                self.items.append(item)

    def _use(self, item: ast.Use, base: Path, stack: tuple[Path, ...]) -> None:
        target = (base / item.path).resolve()
        if target in stack:
            chain = " -> ".join(p.name for p in (*stack, target))
            self.errors.error("E104", f"'use' cycle: {chain}", item.span)
            return
        if not self.allow_outside and not target.is_relative_to(self.root_dir):
            self.errors.error(
                "E103",
                f"'{item.path}' is outside the spec's directory ({display_path(self.root_dir)})",
                item.span,
                hint="pass --allow-outside to use files from elsewhere",
            )
            return
        if target in self.loaded:
            return
        self.loaded.add(target)
        self.load_text(self._read(target, item.span), str(target), (*stack, target))

    def _read(self, path: Path, span: Span) -> str:
        """The reader's text for `path`; what it could not read is an error at the `use`
        (a reader of its own may raise OSError or UnicodeDecodeError as well)."""
        try:
            return self.read(path)
        except Unreadable as e:
            raise SpecError([e.at(span)]) from None
        except (OSError, UnicodeDecodeError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise SpecError([_cannot(path, reason).at(span)]) from None


def load(state: CompileState) -> None:
    """Parse `state.text` (read from `state.file`) and every file it uses. What was read
    before a file that could not be (or did not parse) stays in the state for tools."""
    path = Path(state.file).resolve() if not state.file.startswith("<") else None
    loader = _Loader(
        path.parent if path else Path.cwd().resolve(),
        state.read or disk_reader(state.limits),
        state.limits,
        state.allow_outside,
    )
    if path is not None:
        loader.loaded.add(path)
    try:
        loader.load_text(state.text, state.file, (path,) if path else ())
    finally:
        state.items, state.sources, state.comments = loader.items, loader.sources, loader.comments
    state.diagnostics += loader.errors.items


LOAD = Pass(
    "load",
    load,
    needs=("text", "file", "limits", "allow_outside", "read"),
    ensures=("items", "sources", "comments"),
)
