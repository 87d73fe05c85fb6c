"""Golden diagnostics: every `NN_name.net` here is a spec with a mistake, and
`NN_name.out` beside it holds exactly what `netspec compile` prints to stderr.

A case's first lines may carry directives as comments:

    # args: --max-repeat 10     extra command-line arguments
    # exit: 2                   the expected exit code (1 by default)

Files without the `NN_` prefix are helpers that cases `use`. Run
`python -m tests.golden --update` (`make update-fixtures`) from the repository
root to rewrite every `.out` after a deliberate change to a message.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CASE = re.compile(r"\d{2,3}_[a-z0-9_]+\.net")


@dataclass(frozen=True)
class Case:
    spec: Path

    @property
    def name(self) -> str:
        return self.spec.stem

    @property
    def out(self) -> Path:
        return self.spec.with_suffix(".out")

    def _directive(self, key: str) -> str | None:
        for line in self.spec.read_text(encoding="utf-8").splitlines():
            m = re.fullmatch(rf"#\s*{key}:\s*(.*)", line.strip())
            if m:
                return m[1]
        return None

    @property
    def args(self) -> list[str]:
        return shlex.split(self._directive("args") or "")

    @property
    def exit_code(self) -> int:
        return int(self._directive("exit") or 1)


def cases() -> list[Case]:
    return [Case(p) for p in sorted(HERE.glob("*.net")) if CASE.fullmatch(p.name)]


@contextmanager
def at_root() -> Iterator[None]:
    """Run from the repository root, so that every path in a message is relative to it."""
    before = Path.cwd()
    os.chdir(ROOT)
    try:
        yield
    finally:
        os.chdir(before)


def run(case: Case) -> tuple[int, str]:
    """`netspec compile CASE ARGS` in process: its exit code and its stderr."""
    from cli import main

    with at_root():
        rel = case.spec.relative_to(ROOT).as_posix()
        result = CliRunner().invoke(main, ["compile", rel, *case.args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def update() -> list[str]:
    """Rewrite every case's `.out`; return the names of those that changed."""
    changed = []
    for case in cases():
        _, stderr = run(case)
        if not case.out.exists() or case.out.read_text(encoding="utf-8") != stderr:
            case.out.write_text(stderr, encoding="utf-8")
            changed.append(case.name)
    return changed
