"""The `netspec` command line's entry point: `python cli.py COMMAND ...` in a checkout is
`netspec COMMAND ...`. The commands live in the `netspec.cli` package (one module per
command group), which is what the installed `netspec` script and `python -m netspec` run.

Exit codes: 0 ok, 1 a mistake in a spec or an input file, 2 a usage error, 130 interrupted.
"""

from __future__ import annotations

from netspec.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
