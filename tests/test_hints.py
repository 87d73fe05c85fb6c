"""The hint corpus: every `tests/golden/hints/NAME.net` is a mistake a newcomer makes,
named for it (its first line says which), and `NAME.out` beside it holds exactly what
`netspec compile` prints to stderr for it: each diagnostic's file:line:col, message, the
line with its caret, and the hint. Each hint was read by hand once; the goldens hold it.

After a deliberate change to a message, refresh the corpus and read the diff:

    NETSPEC_REGEN=1 .venv/bin/python -m pytest tests/test_hints.py

(`make update-fixtures` runs that too). Directives are those of tests/golden: a line
`# exit: 0` in a case expects that exit code (a warning); 1 by default.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from tests.golden import Case, run

HINTS = Path(__file__).resolve().parent / "golden" / "hints"
CASES = [Case(p) for p in sorted(HINTS.glob("*.net"))]
REGEN = os.environ.get("NETSPEC_REGEN") == "1"
_HEADER = re.compile(r"^\S+:\d+:\d+: (error|warning)\[[EW]\d{3}\]: ")


def _diagnostics(out: str) -> list[list[str]]:
    """The printed diagnostics, each as its lines (header, quote, caret, hint, notes)."""
    found: list[list[str]] = []
    for line in out.splitlines():
        if _HEADER.match(line):
            found.append([line])
        elif found:
            found[-1].append(line)
    return found


def test_the_corpus_is_large_and_every_case_distinct() -> None:
    assert len(CASES) >= 60
    outs = [c.out.read_text(encoding="utf-8") for c in CASES if c.out.exists()]
    assert len(set(outs)) == len(outs) == len(CASES)
    for case in CASES:
        assert re.fullmatch(r"[a-z0-9_]+", case.name), case.name
        assert case.spec.read_text(encoding="utf-8").startswith("# "), case.name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hint(case: Case) -> None:
    code, stderr = run(case)
    if REGEN:
        case.out.write_text(stderr, encoding="utf-8")
    assert stderr == case.out.read_text(encoding="utf-8"), (
        f"{case.name}: stderr differs; NETSPEC_REGEN=1 refreshes it if the change is deliberate"
    )
    assert code == case.exit_code
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_diagnostic_is_located_and_has_a_hint(case: Case) -> None:
    """Each diagnostic names this case's file, quotes its line with a caret, and says what to
    do: a hint that is not empty and does not end in a list with nothing in it."""
    diagnostics = _diagnostics(case.out.read_text(encoding="utf-8"))
    assert diagnostics, case.name
    rel = case.spec.relative_to(HINTS.parents[2]).as_posix()
    for header, quote, caret, *rest in diagnostics:
        assert header.startswith(f"{rel}:"), header
        assert quote.startswith("    ") and caret.strip().startswith("^"), (quote, caret)
        hint = rest[0] if rest else ""
        assert hint.startswith("    ") and not hint.startswith("    note:"), (case.name, header)
        assert hint.strip() and not hint.rstrip().endswith(":"), (case.name, hint)
