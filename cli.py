"""The `netspec` command line. Heavy libraries (torch, onnx) are imported only by
the commands that need them, so `netspec compile` stays fast.

Exit codes: 0 ok, 1 a mistake in a spec or an input file, 2 a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from netspec.compiler import Compiled, compile
from netspec.console import err_console, out_console, parse_set, reported
from netspec.diagnostics import render_all
from netspec.limits import Limits


def limit_options(f: Callable[..., Any]) -> Callable[..., Any]:
    defaults = Limits()
    for field in reversed(list(Limits.model_fields)):
        flag = "--" + field.replace("_", "-")
        f = click.option(
            flag,
            type=click.IntRange(min=1),
            default=getattr(defaults, field),
            show_default=True,
            help=f"limit: {field.replace('_', ' ')}",
        )(f)
    return f


def load(
    spec: Path,
    network: str | None,
    sets: tuple[str, ...],
    allow_outside: bool = False,
    **limits: int,
) -> Compiled:
    compiled = compile(
        spec, network, limits=Limits(**limits), allow_outside=allow_outside, **parse_set(sets)
    )
    if compiled.warnings:
        err_console.print(render_all(compiled.warnings, compiled.program.sources), markup=False)
    return compiled


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspec", prog_name="netspec")
def main() -> None:
    """netspec: declarative convolutional networks, checked before they run."""


@main.command("compile")
@click.argument("spec", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--network", "-n", help="which network of the spec (when it has several)")
@click.option("--json", "as_json", is_flag=True, help="print the layers and totals as JSON")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="override a constant, a symbolic size or a training value",
)
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
    allow_outside: bool,
    **limits: int,
) -> None:
    """Check SPEC and show every layer: shape, receptive field, parameters, multiply-adds."""
    with reported():
        compiled = load(spec, network, sets, allow_outside, **limits)
        if emit == "python":
            from netspec.lower.emit import emit_python

            click.echo(emit_python(compiled), nl=False)
        elif as_json:
            from netspec.report import to_json

            click.echo(json.dumps(to_json(compiled), indent=2))
        else:
            from netspec.report import table, totals_text

            out_console.print(table(compiled))
            out_console.print()
            out_console.print(totals_text(compiled), markup=False)
        if output is not None:
            from netspec.export.onnx_export import export_compiled

            export_compiled(compiled, output, log=lambda m: err_console.print(m, markup=False))


def _add_commands() -> None:
    """Training and deployment commands; each imports torch only when it runs."""
    from netspec.export.commands import bench_cmd, export_cmd, run_cmd
    from netspec.train.commands import augment_cmd, eval_cmd, train_cmd

    for command in (train_cmd, eval_cmd, augment_cmd, export_cmd, run_cmd, bench_cmd):
        main.add_command(command)


_add_commands()

if __name__ == "__main__":
    main()
