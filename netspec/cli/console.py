"""What every command shares: one way to print, one way to turn a mistake into a message
and an exit code.

Exit codes: 0 ok, 1 a mistake in a spec or an input file, 2 a usage error, 130 interrupted.
Text that comes from the user's files (a spec line quoted in a diagnostic, the labels in
an ONNX file, file names) is printed literally: no markup, no emoji codes, and control,
bidi and zero-width characters shown as escapes (`netspec.text.literal`), so that nothing
in a file can drive the terminal or show other text than it holds.
Nothing here imports torch or numpy, so `netspec compile` stays light; rich is loaded
only when something is printed with it (an error, a diagnostic, a table), so that
`netspec run` on a model prints its result without it.
"""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from typing import IO, TYPE_CHECKING, Any, NoReturn, cast

import click

from netspec.diagnostics import Diagnostic, Sources, SpecError, render_all
from netspec.errors import NetspecError, OutputError, UsageError
from netspec.text import literal

if TYPE_CHECKING:
    from rich.console import Console

    err_console: Console
    out_console: Console


class _Stdout(io.TextIOBase):
    """`sys.stdout` as it is at each write (click's test runner swaps it), with a failed
    write (a full disk, a closed pipe, a character the encoding lacks) as an OutputError."""

    def write(self, text: str) -> int:
        try:
            return sys.stdout.write(text)
        except (OSError, UnicodeEncodeError) as e:
            raise _output_error(e) from None

    def flush(self) -> None:
        try:
            sys.stdout.flush()
        except OSError as e:
            raise _output_error(e) from None

    def isatty(self) -> bool:
        return sys.stdout.isatty()

    def fileno(self) -> int:
        return sys.stdout.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(sys.stdout, "encoding", None) or "utf-8"


def _output_error(e: OSError | UnicodeEncodeError) -> OutputError:
    """The error to report; stdout is pointed at /dev/null so that Python's own flush at
    exit does not fail a second time with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, io.UnsupportedOperation):
        pass  # not a real file descriptor (a test runner's buffer): nothing flushes at exit
    if isinstance(e, UnicodeEncodeError):
        return OutputError(
            f"cannot print {e.object[e.start : e.end]!r} to stdout: its encoding is {e.encoding}",
            hint="set PYTHONIOENCODING=utf-8 (or a UTF-8 locale) to print any file name",
        )
    return OutputError(f"cannot write to stdout ({e.strerror or e})")


stdout = cast(IO[str], _Stdout())


@cache
def _console(name: str) -> Console:
    """`err_console` (stderr) or `out_console` (stdout): rich consoles, built on first use."""
    from rich.console import Console

    if name == "err_console":
        return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)
    return Console(file=stdout, highlight=False, soft_wrap=True, emoji=False)


def __getattr__(name: str) -> Console:
    """`err_console` and `out_console`, on first use (PEP 562)."""
    if name not in ("err_console", "out_console"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _console(name)


def say(message: str) -> None:
    """A progress or notice line, on stderr so that stdout stays the command's result;
    printed as `err_console` would print it (tabs expanded), without loading rich."""
    click.echo(literal(message).expandtabs(8), err=True)


def echo(text: str) -> None:
    """A line of the command's result, on stdout, printed literally."""
    click.echo(literal(text), file=stdout)


def fail(message: str, code: int, hint: str | None = None) -> NoReturn:
    from rich.markup import escape

    err = _console("err_console")
    err.print(f"[bold red]error:[/] {escape(literal(message))}", markup=True)
    if hint:
        err.print(f"    {literal(hint)}", markup=False)
    sys.exit(code)


def show_diagnostics(diagnostics: Iterable[Diagnostic], sources: Sources | None = None) -> None:
    """Diagnostics with the lines they point into, on stderr."""
    listed = list(diagnostics)
    _console("err_console").print(
        literal(render_all(listed, sources_of(listed, sources))), markup=False
    )


def sources_of(diagnostics: Iterable[Diagnostic], known: Sources | None = None) -> Sources:
    """Where to quote the diagnostics' lines from: the texts known, else each file they
    point into, from disk, the quoted line alone (bounded: netspec.diagnostics)."""
    sources = known or Sources()
    for d in diagnostics:
        for span in (d.span, *(n.span for n in d.notes if n.span)):
            if span.file not in sources.texts:
                sources.disk.add(span.file)
    return sources


@contextmanager
def stdout_errors() -> Iterator[None]:
    """A failed write to stdout by code that prints to it directly (click's `--help` and
    `--version`) as the OutputError `echo` raises, not a traceback."""
    try:
        yield
    except (OSError, UnicodeEncodeError) as e:
        raise _output_error(e) from None


@contextmanager
def reported(interrupted: str = "interrupted") -> Iterator[None]:
    """Every `NetspecError` becomes a message and its exit code (1: a spec or an input
    file, 2: usage), never a traceback; Ctrl-C exits 130 with `interrupted`. A library
    the command needs and this install lacks (torch on a deployment machine's light
    install, README) is named, with how to get it."""
    try:
        yield
    except SpecError as e:
        show_diagnostics(e.diagnostics)
        sys.exit(e.exit_code)
    except NetspecError as e:
        fail(str(e), e.exit_code, e.hint)
    except (KeyboardInterrupt, click.Abort):
        fail(interrupted, 130)
    except ModuleNotFoundError as e:
        missing = (e.name or "").partition(".")[0]
        if missing in ("", "netspec"):
            raise
        fail(
            f"this command needs the Python package '{missing}', which is not installed",
            1,
            hint="`pip install netspec` installs everything; a light install runs only "
            "`netspec run`, `bench` and `compile`",
        )


def parse_set(values: Iterable[str]) -> dict[str, Any]:
    """`--set NAME=VALUE` (repeatable): numbers, true/false, or words."""
    out: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        if not sep or not name.isidentifier():
            raise UsageError(f"--set {item!r}: expected NAME=VALUE, e.g. --set epochs=3")
        out[name] = _scalar(raw)
    return out


def _scalar(raw: str) -> Any:
    if raw in ("true", "false"):
        return raw == "true"
    for kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            continue
    return raw
