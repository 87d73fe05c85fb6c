"""`netspec fmt`: lay out .net files the one way netspec.fmt knows; no style options.

Each FILE is rewritten in place (atomically: netspec.fileio), a DIR stands for every
`*.net` under it (hidden directories and node_modules left out), and `-` reads stdin and
prints to stdout. `--check` writes nothing and lists the files it would change, `--diff`
writes nothing and prints a unified diff. A file that does not parse is reported as
`compile` reports it and left as it is; the others are still formatted.

Exit codes: 0 ok, 1 a file that does not parse or cannot be read (or, with `--check`, a
file to change), 2 a usage error.
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from netspec.cli.console import echo, say, show_diagnostics, stdout
from netspec.cli.options import command
from netspec.diagnostics import Sources, SpecError
from netspec.errors import NetspecError, UsageError
from netspec.fileio import write_bytes
from netspec.fmt import format_text
from netspec.limits import Limits
from netspec.passes.load import read_source

STDIN = "-"
_SKIPPED_DIRS = frozenset({"node_modules"})


@command("fmt")
@click.argument(
    "paths",
    nargs=-1,
    metavar="[FILES|DIRS|-]...",
    type=click.Path(exists=True, allow_dash=True, path_type=Path),
)
@click.option("--check", is_flag=True, help="write nothing; list the files to change, exit 1")
@click.option("--diff", "show_diff", is_flag=True, help="write nothing; print a unified diff")
def fmt_cmd(paths: tuple[Path, ...], check: bool, show_diff: bool) -> None:
    """Format .net files in place (a directory: every *.net under it; -: stdin to stdout)."""
    if not paths:
        raise UsageError(
            "name the files or directories to format, or - to read stdin",
            hint="e.g. netspec fmt specs/  or  netspec fmt --check specs/",
        )
    results = [_format_one(path, check, show_diff) for path in _spec_files(paths)]
    if not all(results):
        sys.exit(1)


def _spec_files(paths: tuple[Path, ...]) -> Iterator[Path]:
    """The files named, and every *.net under the directories named, in a stable order."""
    for path in paths:
        if str(path) == STDIN or not path.is_dir():
            yield path
            continue
        for found in sorted(path.rglob("*.net")):
            inside = found.relative_to(path).parts[:-1]
            if found.is_file() and not any(_skipped(part) for part in inside):
                yield found


def _skipped(directory: str) -> bool:
    return directory.startswith(".") or directory in _SKIPPED_DIRS


def _format_one(path: Path, check: bool, show_diff: bool) -> bool:
    """Format one file (or stdin); False when it cannot be, or `--check` finds a change."""
    name = "<stdin>" if str(path) == STDIN else str(path)
    text: str | None = None
    try:
        text = _read(path)
        result = format_text(text, name)
    except NetspecError as e:
        return _report(e, name, text)
    changed = result != text
    if show_diff and changed:
        click.echo(_diff(name, text, result), nl=False, file=stdout)
    if check or show_diff:
        if check and changed and not show_diff:
            echo(name)
        return not (check and changed)
    if name == "<stdin>":
        click.echo(result, nl=False, file=stdout)
    elif changed:
        write_bytes(path, result.encode("utf-8"))
        say(f"formatted {name}")
    return True


def _report(e: NetspecError, name: str, text: str | None) -> bool:
    """Say why a file cannot be formatted (a syntax error as `compile` shows it); False."""
    if isinstance(e, SpecError):
        show_diagnostics(e.diagnostics, None if text is None else Sources({name: text}))
    else:
        say(f"error: {e}" + (f"\n    {e.hint}" if e.hint else ""))
    return False


def _read(path: Path) -> str:
    """The file's text (read as `compile` reads a spec), or stdin's."""
    if str(path) != STDIN:
        return read_source(path, Limits())
    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise NetspecError(f"cannot read stdin as UTF-8 text: {e}") from None


def _diff(name: str, before: str, after: str) -> str:
    """A unified diff that `patch -p1` applies; a last line without its newline is marked
    as diff marks it."""
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        fromfile=f"a/{name}",
        tofile=f"b/{name}",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
