"""`python -m netspec` and the `netspec` command (netspec.cli)."""

from __future__ import annotations

from netspec.cli import main

if __name__ == "__main__":
    main()
