"""The grammar and its Lark LALR parser, built once; where a token sits in the source; the
comments the lexer passes over, kept while `comments_kept()` is open."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from importlib import resources
from pathlib import Path

from lark import Lark, Token

from netspec.diagnostics import Span

# The list the lexer adds comment tokens to while a parse keeps them; None otherwise (the
# fuzz tests and the syntax-error catalogue parse with the same cached parser).
_KEPT: ContextVar[list[Token] | None] = ContextVar("netspec_comments", default=None)


def grammar_text() -> str:
    """The grammar ships inside the wheel; in a source checkout it sits beside the package."""
    packaged = resources.files("netspec") / "grammar" / "netspec.lark"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).parents[2] / "grammar" / "netspec.lark").read_text(encoding="utf-8")


def _keep(token: Token) -> Token:
    """Lexer callback for COMMENT, which the grammar ignores: keep it if a parse asks."""
    kept = _KEPT.get()
    if kept is not None:
        kept.append(token)
    return token


def _keep_crossed(token: Token) -> Token:
    """Lexer callback for `_PIPE`: a chain continued on a later line takes the comment lines
    in between into its `|` token, so such a token is kept when it holds a `#`."""
    if "#" in token:
        _keep(token)
    return token


@contextmanager
def comments_kept() -> Iterator[list[Token]]:
    """The COMMENT tokens, and the `_PIPE` tokens holding comments, that the lexer meets
    while this is open (in this thread or task only)."""
    kept: list[Token] = []
    reset = _KEPT.set(kept)
    try:
        yield kept
    finally:
        _KEPT.reset(reset)


@cache
def lark_parser() -> Lark:
    """LALR(1) with positions kept on every rule, so that every node gets its Span."""
    return Lark(
        grammar_text(),
        parser="lalr",
        propagate_positions=True,
        maybe_placeholders=True,
        lexer_callbacks={"COMMENT": _keep, "_PIPE": _keep_crossed},
    )


def tok_span(file: str, tok: Token, trim: int = 0) -> Span:
    """Where a token sits; `trim` drops characters at its end (the `(` of a call's name)."""
    end_col = (tok.end_column or tok.column or 1) - trim
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, end_col)
