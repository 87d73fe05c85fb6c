"""`python -m netspec` and the `netspec` command.

In a wheel the CLI is `netspec/cli.py` (mapped from the repository's top-level
`cli.py` at build time); in a source checkout or editable install it is that
top-level `cli.py` itself.
"""

from __future__ import annotations

try:
    from netspec.cli import main  # type: ignore[import-not-found, import-untyped, unused-ignore]
except ImportError:
    from cli import main  # type: ignore[import-not-found, no-redef, unused-ignore]

if __name__ == "__main__":
    main()
