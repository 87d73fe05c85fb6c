"""`netspec compile`: check a spec and show every layer; imports neither torch nor numpy
unless `-o` exports the network."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from netspec.cli.console import echo, out_console, parse_set, say, show_diagnostics, stdout
from netspec.cli.options import command, limit_options, network_option, sets_option
from netspec.compiler import Compiled, compile
from netspec.limits import Limits


def load(
    spec: Path,
    network: str | None,
    sets: tuple[str, ...],
    allow_outside: bool = False,
    **limits: int,
) -> Compiled:
    """Compile `spec` with the command line's values, printing its warnings on stderr."""
    compiled = compile(
        spec, network, limits=Limits(**limits), allow_outside=allow_outside, **parse_set(sets)
    )
    if compiled.warnings:
        show_diagnostics(compiled.warnings, compiled.program.sources)
    return compiled


@command("compile")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@network_option
@click.option("--json", "as_json", is_flag=True, help="print the layers and totals as JSON")
@sets_option("override a constant, a symbolic size or a training value")
@click.option(
    "--emit",
    type=click.Choice(["table", "python"]),
    default="table",
    help="what to print: the layer table, or a standalone PyTorch module",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="also export the (untrained) network to this ONNX file",
)
@click.option(
    "--wide",
    is_flag=True,
    help="print the table at its full width, never cutting a name or shape to fit",
)
@click.option(
    "--allow-outside", is_flag=True, help="let `use` read files outside the spec's directory"
)
@limit_options
def compile_cmd(
    spec: Path,
    network: str | None,
    as_json: bool,
    sets: tuple[str, ...],
    emit: str,
    output: Path | None,
    wide: bool,
    allow_outside: bool,
    **limits: int,
) -> None:
    """Check SPEC and show every layer: shape, receptive field, parameters, multiply-adds."""
    compiled = load(spec, network, sets, allow_outside, **limits)
    if emit == "python":
        from netspec.lower.emit import emit_python

        click.echo(emit_python(compiled), nl=False, file=stdout)
    elif as_json:
        from netspec.report import to_json

        echo(json.dumps(to_json(compiled), indent=2))
    else:
        from netspec.report import table, totals_text

        _print_table(table(compiled), wide)
        out_console.print()
        out_console.print(totals_text(compiled), markup=False)
    if output is not None:
        from netspec.export.onnx_export import export_compiled

        export_compiled(compiled, output, log=say)


def _print_table(t: Table, wide: bool) -> None:
    """The layer table at the console's width (names and shapes are kept whole; headers
    and numbers wrap first), or with `--wide` at its own full width, one line per row."""
    if wide:
        full = Console(width=1 << 16).measure(t).maximum
        Console(file=stdout, highlight=False, emoji=False, width=full).print(t)
    else:
        out_console.print(t)
