"""`python -m netspec` and the `netspec` command (netspec.cli)."""

from __future__ import annotations

import sys


def main() -> None:
    """Run netspec.cli's root group; Ctrl-C while the command line itself loads exits 130
    too (from then on the group and each command handle it)."""
    try:
        from netspec.cli import main as group
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    group()


if __name__ == "__main__":
    main()
