"""docs/language.md cannot rot: every ```netspec example compiles cleanly, and every
registered operation is in its table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import netspec
from netspec.ops import REGISTRY

DOC = Path(__file__).resolve().parent.parent / "docs" / "language.md"
FENCE = re.compile(r"^```(netspec(?:-fragment)?)\n(.*?)^```", re.MULTILINE | re.DOTALL)
NETWORK = re.compile(r"^network\s+(\w+)\(", re.MULTILINE)


def _examples() -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return [body for kind, body in FENCE.findall(text) if kind == "netspec"]


EXAMPLES = _examples()


def test_the_doc_has_examples() -> None:
    assert len(EXAMPLES) >= 15


@pytest.mark.parametrize("index", range(len(EXAMPLES)))
def test_example_compiles(index: int) -> None:
    text = EXAMPLES[index]
    networks = NETWORK.findall(text)
    assert networks, f"example {index} defines no network:\n{text}"
    for name in networks:
        compiled = netspec.compile(text, network=name)
        assert compiled.warnings == [], [d.message for d in compiled.warnings]
        assert compiled.totals.layers > 0


def _op_rows() -> dict[str, str]:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Every operation", 1)[1]
    rows = re.findall(r"^\| `(\w+)` \|(.*)$", section, re.MULTILINE)
    return dict(rows)


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_operation_is_documented(name: str) -> None:
    rows = _op_rows()
    assert name in rows, f"docs/language.md's operation table has no row for '{name}'"
    opdef = REGISTRY[name]
    for positional in opdef.positional:
        assert positional in rows[name].split("|")[0], (name, positional)
    for field in opdef.params.model_fields:
        assert field in rows[name], (name, field)


def test_no_row_for_an_unknown_operation() -> None:
    assert set(_op_rows()) <= set(REGISTRY)
