"""`netspec lsp`: the language server, for editors (netspec.lsp). It speaks the Language
Server Protocol over stdin and stdout; stdout carries nothing else."""

from __future__ import annotations

import click

from netspec.cli.options import command


@command("lsp")
@click.option(
    "--stdio", is_flag=True, help="talk over stdin and stdout (the default, and the only way)"
)
def lsp_cmd(stdio: bool) -> None:
    """Run the language server for an editor: diagnostics as you type, hover with each
    layer's shape, receptive field, parameters and MACs, definitions and references,
    completion, formatting, semantic tokens, inlay shapes, outline and rename."""
    from netspec.lsp.server import serve

    serve()
