"""The `netspec` command line: the root group, with each command group in its own module.

A command's module is imported only when that command runs (or when `--help` lists
them), and command modules import torch, onnx and numpy inside their functions only,
so `netspec compile` imports none of them. Ctrl-C exits 130 with a message from the
moment this package starts to load (netspec.__main__) to the end, while commands load
and parse their flags included. The repository's top-level `cli.py` is the same entry.

Exit codes: 0 ok, 1 a mistake in a spec or an input file, 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from netspec.cli.options import Reported

# command name -> "module:attribute" of its click command
COMMANDS: Mapping[str, str] = {
    "compile": "netspec.cli.compile:compile_cmd",
    "fmt": "netspec.cli.fmt:fmt_cmd",
    "lsp": "netspec.cli.lsp:lsp_cmd",
    "train": "netspec.cli.train:train_cmd",
    "eval": "netspec.cli.train:eval_cmd",
    "augment": "netspec.cli.train:augment_cmd",
    "export": "netspec.cli.export:export_cmd",
    "run": "netspec.cli.run:run_cmd",
    "bench": "netspec.cli.run:bench_cmd",
    "convert": "netspec.cli.detect:convert_cmd",
    "detect": "netspec.cli.detect:detect_cmd",
    "scenes": "netspec.cli.scenes:scenes_cmd",
    "serve": "netspec.cli.serve:serve_cmd",
    "show": "netspec.cli.show:show_cmd",
}


class LazyGroup(Reported, click.Group):
    """A group that imports a command's module when the command is first asked for; Ctrl-C
    while it loads one, or before the command's own handler is in place, exits 130."""

    def __init__(self, *args: Any, lazy: Mapping[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy and name not in self.commands:
            module, _, attribute = self.lazy[name].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            self.add_command(command, name)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="netspec", prog_name="netspec")
def main() -> None:
    """netspec: declarative convolutional networks, checked before they run."""
