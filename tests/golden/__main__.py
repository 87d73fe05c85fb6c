"""`python -m tests.golden --update`: regenerate every golden `.out` file.

Without `--update`, print each case's stderr and exit code (a quick look while
writing messages).
"""

from __future__ import annotations

import sys

from tests.golden import cases, run, update


def main(argv: list[str]) -> int:
    if argv == ["--update"]:
        changed = update()
        print(f"{len(cases())} cases, {len(changed)} updated: {', '.join(changed) or '-'}")
        return 0
    if argv:
        print("usage: python -m tests.golden [--update]", file=sys.stderr)
        return 2
    for case in cases():
        code, stderr = run(case)
        print(f"== {case.name} (exit {code}, expected {case.exit_code})\n{stderr}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
