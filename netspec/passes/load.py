"""load: parse the spec and every file it `use`s, in the order they are read.

A `use` that leaves the spec's directory (without --allow-outside) or loops back is
refused here. Every read is bounded: only regular files are opened (a FIFO, a
device or a directory is refused without blocking on it), and at most
`max_file_bytes` are read, whatever size the file claims.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from netspec.diagnostics import Collector, Diagnostic, Sources, Span, SpecError, display_path
from netspec.limits import Limits
from netspec.passes.state import CompileState, Pass
from netspec.syntax import ast
from netspec.syntax.parser import parse

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((words for test, words in _KINDS if test(mode)), "not a regular file")


class _Unreadable(Exception):
    """Why a file cannot be read as a spec: the OS's reason, or what it is instead."""


class _TooLarge(Exception):
    """A file over the byte limit; carries its size when the file says it."""

    def __init__(self, size: int | None) -> None:
        super().__init__(size)
        self.size = size


def _read_bytes(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. The limit holds while reading
    (at most `limit + 1` bytes are read), whatever size the file claims."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags)
    except OSError as e:
        raise _Unreadable(e.strerror or str(e)) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Unreadable(f"it is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise _TooLarge(info.st_size)
        chunks, got = [], 0
        while got <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise _TooLarge(None)  # it grew, or said less than it holds
        return b"".join(chunks)
    except OSError as e:
        raise _Unreadable(e.strerror or str(e)) from None
    finally:
        os.close(fd)


def read_source(path: Path, limits: Limits, span: Span | None = None) -> str:
    """The UTF-8 text of a spec file; SpecError (E101, E102) located at `span` (the `use`)."""
    where = span or Span(str(path), 1, 1, 1, 1)
    shown, limit = display_path(path), limits.max_file_bytes
    try:
        data = _read_bytes(path, limit)
    except _Unreadable as e:
        raise SpecError([Diagnostic("E101", f"cannot read '{shown}': {e}", where)]) from None
    except _TooLarge as e:
        if e.size is not None:
            message = f"'{shown}' is {e.size:,} bytes; the limit is {limit:,}"
        else:
            message = f"'{shown}' holds more than the limit of {limit:,} bytes"
        raise SpecError(
            [
                Diagnostic(
                    "E102",
                    message,
                    where,
                    hint="raise it with --max-file-bytes if it is meant to be this large",
                )
            ]
        ) from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            [Diagnostic("E101", f"cannot read '{shown}' as UTF-8 text: {e}", where)]
        ) from None


class _Loader:
    def __init__(self, root_dir: Path, limits: Limits, allow_outside: bool) -> None:
        self.root_dir = root_dir
        self.limits = limits
        self.allow_outside = allow_outside
        self.items: list[ast.Item] = []
        self.sources = Sources()
        self.errors = Collector()
        self.loaded: set[Path] = set()

    def load_text(self, text: str, file: str, stack: tuple[Path, ...]) -> None:
        self.sources.texts[file] = text
        module = parse(text, file, self.limits)
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
        text = read_source(target, self.limits, item.span)
        self.load_text(text, str(target), (*stack, target))


def load(state: CompileState) -> None:
    """Parse `state.text` (read from `state.file`) and every file it uses."""
    path = Path(state.file).resolve() if not state.file.startswith("<") else None
    loader = _Loader(
        path.parent if path else Path.cwd().resolve(), state.limits, state.allow_outside
    )
    if path is not None:
        loader.loaded.add(path)
    loader.load_text(state.text, state.file, (path,) if path else ())
    state.diagnostics += loader.errors.items
    state.items, state.sources = loader.items, loader.sources


LOAD = Pass(
    "load", load, needs=("text", "file", "limits", "allow_outside"), ensures=("items", "sources")
)
