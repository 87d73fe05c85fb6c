"""The grammar and its Lark LALR parser, built once; where a token sits in the source."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token

from netspec.diagnostics import Span


def grammar_text() -> str:
    """The grammar ships inside the wheel; in a source checkout it sits beside the package."""
    packaged = resources.files("netspec") / "grammar" / "netspec.lark"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).parents[2] / "grammar" / "netspec.lark").read_text(encoding="utf-8")


@cache
def lark_parser() -> Lark:
    """LALR(1) with positions kept on every rule, so that every node gets its Span."""
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def tok_span(file: str, tok: Token, trim: int = 0) -> Span:
    """Where a token sits; `trim` drops characters at its end (the `(` of a call's name)."""
    end_col = (tok.end_column or tok.column or 1) - trim
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, end_col)
