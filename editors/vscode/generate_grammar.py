"""Writes syntaxes/netspec.tmLanguage.json, the TextMate grammar that colours .net specs in
VS Code (and in any editor that reads TextMate grammars), from netspec's own words: the
grammar's keywords and the registry's operations (netspec.highlight.KEYWORDS, OPERATIONS),
so that a new operation is coloured once this is run again. tests/test_editors.py fails
while the checked-in file differs from what this writes.

    .venv/bin/python editors/vscode/generate_grammar.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from netspec.highlight import DECLARATIONS, KEYWORDS, LITERALS, OPERATIONS

HERE = Path(__file__).resolve().parent
TARGET = HERE / "syntaxes" / "netspec.tmLanguage.json"
NAME = r"[A-Za-z_][A-Za-z0-9_]*"


def _words(words: tuple[str, ...]) -> str:
    return r"\b(?:" + "|".join(words) + r")\b"


def _captured(match: str, *scopes: str) -> dict[str, Any]:
    """A pattern whose groups, in order, get `scopes`."""
    captures = {str(i): {"name": f"{scope}.netspec"} for i, scope in enumerate(scopes, 1)}
    return {"match": match, "captures": captures}


def _scoped(match: str, scope: str) -> dict[str, Any]:
    return {"match": match, "name": f"{scope}.netspec"}


def grammar() -> dict[str, Any]:
    """The grammar, as the JSON file holds it."""
    other_keywords = tuple(k for k in KEYWORDS if k not in DECLARATIONS)
    repository = {
        "comment": _captured("(#).*$", "punctuation.definition.comment")
        | {"name": "comment.line.number-sign.netspec"},
        "string": _scoped(r'"[^"]*"', "string.quoted.double"),
        "declaration": {
            "patterns": [
                _captured(
                    rf"\b(train)\s+({NAME})\s+(on)\s+({NAME})",
                    "storage.type.train",
                    "entity.name.function",
                    "keyword.other.on",
                    "entity.name.type.dataset",
                ),
                _captured(rf"\b(network|block)\s+({NAME})", "storage.type", "entity.name.function"),
                _captured(rf"\b(shared)\s+({NAME})", "storage.modifier", "entity.name.function"),
                _captured(
                    rf"\b(const|table|kernel)\s+({NAME})",
                    "storage.type",
                    "variable.other.constant",
                ),
            ]
        },
        "assignment": _captured(
            rf"^\s*({NAME})\s*(=)", "variable.other.definition", "keyword.operator.assignment"
        ),
        "argument": _captured(rf"\b({NAME})\s*(=)", "variable.parameter", "keyword.operator"),
        "operation": _scoped(_words(OPERATIONS), "support.function.operation"),
        "keyword": _scoped(_words(other_keywords), "keyword.control"),
        "literal": {
            "patterns": [
                _scoped(_words(LITERALS), "constant.language.boolean"),
                _scoped(r"\bin\b", "variable.language.input"),
            ]
        },
        "call": _scoped(rf"\b{NAME}(?=\()", "entity.name.function.call"),
        "number": {
            "patterns": [
                _scoped(r"-?\b\d+(?:x(?:-?\d+|[A-Z][A-Za-z0-9_]*))+\b", "constant.numeric.size"),
                _scoped(r"\b\d+(?:\.\d+)?(?:deg|px|%)", "constant.numeric.quantity"),
                _scoped(
                    r"\b\d+\.\d+(?:[eE][+-]?\d+)?\b|\b\d+[eE][+-]?\d+\b", "constant.numeric.float"
                ),
                _scoped(r"\b\d+\b", "constant.numeric.integer"),
            ]
        },
        "operator": {
            "patterns": [
                _scoped(r"\|", "keyword.operator.pipe"),
                _scoped(r"\.\.|//|[-+*/%]", "keyword.operator.arithmetic"),
                _scoped("=", "keyword.operator.assignment"),
            ]
        },
        "punctuation": {
            "patterns": [
                _scoped(r"[{}]", "punctuation.section.braces"),
                _scoped(r"[\[\]]", "punctuation.section.brackets"),
                _scoped(r"[()]", "punctuation.section.parens"),
                _scoped("[,;:]", "punctuation.separator"),
                _scoped(r"\.", "punctuation.accessor"),
                _scoped(r"\\$", "punctuation.separator.continuation"),
            ]
        },
    }
    return {
        "$schema": "https://raw.githubusercontent.com/martinring/tmlanguage/master/tmlanguage.json",
        "name": "netspec",
        "scopeName": "source.netspec",
        "fileTypes": ["net"],
        "patterns": [{"include": f"#{key}"} for key in repository],
        "repository": repository,
    }


def text() -> str:
    return json.dumps(grammar(), indent=2) + "\n"


if __name__ == "__main__":
    TARGET.write_text(text(), encoding="utf-8")
    print(f"wrote {TARGET}")
