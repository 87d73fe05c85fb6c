"""What every command shares: one way to turn a mistake into a message and an exit code.

Exit codes: 0 ok, 1 a mistake in a spec or an input file, 2 a usage error, 130 interrupted.
Nothing here imports torch or numpy, so `netspec compile` stays light.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

from netspec.diagnostics import Diagnostic, Sources, SpecError, render_all
from netspec.errors import NetspecError, UsageError

err_console = Console(stderr=True, highlight=False, soft_wrap=True)
out_console = Console(highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A progress or notice line, on stderr so that stdout stays the command's result."""
    err_console.print(message, markup=False)


def fail(message: str, code: int, hint: str | None = None) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
    if hint:
        err_console.print(f"    {hint}", markup=False)
    sys.exit(code)


def sources_of(diagnostics: Iterable[Diagnostic], known: Sources | None = None) -> Sources:
    """The text of every file the diagnostics point into, to quote their lines."""
    sources = known or Sources()
    for d in diagnostics:
        for span in (d.span, *(n.span for n in d.notes if n.span)):
            path = Path(span.file)
            if span.file in sources.texts or not path.is_file():
                continue
            try:
                sources.texts[span.file] = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                continue
    return sources


@contextmanager
def reported(interrupted: str = "interrupted") -> Iterator[None]:
    """Every `NetspecError` becomes a message and its exit code (1: a spec or an input
    file, 2: usage), never a traceback; Ctrl-C exits 130 with `interrupted`."""
    try:
        yield
    except SpecError as e:
        err_console.print(render_all(e.diagnostics, sources_of(e.diagnostics)), markup=False)
        sys.exit(e.exit_code)
    except NetspecError as e:
        fail(str(e), e.exit_code, e.hint)
    except KeyboardInterrupt:
        fail(interrupted, 130)


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
