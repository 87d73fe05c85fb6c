"""Golden diagnostics: each bad spec in tests/golden prints exactly its `.out` file.

After a deliberate change to a message, refresh them with `make update-fixtures`.
"""

from __future__ import annotations

import pytest

from tests.golden import Case, cases, run

CASES = cases()


def test_there_are_many_distinct_cases() -> None:
    assert len(CASES) >= 30
    assert len({c.out.read_text(encoding="utf-8") for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_golden(case: Case) -> None:
    code, stderr = run(case)
    assert stderr == case.out.read_text(encoding="utf-8"), (
        f"{case.name}: stderr differs; run `make update-fixtures` if the change is deliberate"
    )
    assert code == case.exit_code
    assert "Traceback" not in stderr


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_spec_error_is_located(case: Case) -> None:
    """A spec error (or lint) starts with `file:line:col: error[CODE]:` (or `warning[`); a
    usage error with `error:`."""
    first = case.out.read_text(encoding="utf-8").splitlines()[0]
    if case.exit_code in (0, 1):
        kind = "error" if case.exit_code else "warning"
        where, _, rest = first.partition(f": {kind}[")
        path, line, col = where.rsplit(":", 2)
        assert path.startswith("tests/golden/") and int(line) >= 1 and int(col) >= 1
        assert rest[:4].isalnum() and rest[4] == "]"
    else:
        assert first.startswith("error: ")
