"""Bounds on what the parser is given, checked before the work they would cost.

- tokens: a file over `max_tokens` words, numbers and symbols is refused before Lark
  parses it (a 1 MiB spec would otherwise take seconds and hundreds of MB);
- numbers: a literal with more digits than any size is meant to have, or a float
  that overflows to infinity, is refused where it is written;
- nesting: groups, repeats, shared bodies and arithmetic nested deeper than
  `max_nesting` are refused before the tree is walked (recursively) into the AST.

>>> check_lexemes("const a = 123456789012345678901234567890", "<s>", 100)
Traceback (most recent call last):
...
netspec.diagnostics.SpecError: this number has 30 digits; a number in a spec has at most 18
"""

from __future__ import annotations

import math
import re

from lark import Token, Tree

from netspec.diagnostics import Diagnostic, Span, SpecError

# Comments and strings first, so that their words are not counted or checked.
_LEXEME = re.compile(r'#[^\n]*|"[^"\n]*"|\d[\w.]*(?:(?<=[eE])[+-]\d+)?|\w+|\S')
_FLOAT = re.compile(r"\d+(\.\d+)?[eE][+-]?\d+")
_DIGITS = re.compile(r"\d+")
MAX_DIGITS = 18  # 10^18 - 1: beyond any size, count or stride, and within int64

# Rules that nest: each level of them is one level of recursion later on.
NESTING = frozenset(
    {"group", "repeat", "shared", "add", "sub", "mul", "floordiv", "truediv", "mod", "neg"}
)


def _span(file: str, text: str, start: int, end: int) -> Span:
    line = text.count("\n", 0, start) + 1
    col = start - (text.rfind("\n", 0, start) + 1) + 1
    return Span(file, line, col, line, col + max(end - start, 1))


def _number_problem(lexeme: str) -> str | None:
    """Why a numeric lexeme (1, 2.5, 1e-3, 5x5, 15deg) cannot be a spec's number."""
    longest = max((len(d) for d in _DIGITS.findall(lexeme.split(".")[0])), default=0)
    if longest > MAX_DIGITS:
        return f"this number has {longest} digits; a number in a spec has at most {MAX_DIGITS}"
    if _FLOAT.fullmatch(lexeme) and not math.isfinite(float(lexeme)):
        return "this number is too large"
    return None


def check_lexemes(text: str, file: str, max_tokens: int) -> None:
    """Refuse a file over the token limit (E406) or with an unusable number (E005)."""
    count = 0
    for m in _LEXEME.finditer(text):
        lexeme = m[0]
        if lexeme[0] in '#"':
            count += lexeme[0] == '"'
            continue
        count += 1
        if count > max_tokens:
            raise SpecError(
                [
                    Diagnostic(
                        "E406",
                        f"the file has more than {max_tokens:,} tokens (words, numbers and "
                        "symbols)",
                        _span(file, text, m.start(), m.end()),
                        hint="raise the limit with --max-tokens",
                    )
                ]
            )
        problem = _number_problem(lexeme) if lexeme[0].isdigit() else None
        if problem is not None:
            span = _span(file, text, m.start(), m.end())
            raise SpecError([Diagnostic("E005", problem, span)])


def check_nesting(tree: Tree[Token], file: str, max_nesting: int) -> None:
    """Refuse a parse tree whose nesting rules go deeper than `max_nesting` (E407), at the
    first construct past the limit. The walk keeps its own stack, so any depth is safe."""
    todo: list[tuple[Tree[Token], int]] = [(tree, 0)]
    while todo:
        node, depth = todo.pop()
        if node.data in NESTING:
            depth += 1
            if depth > max_nesting:
                meta = node.meta
                span = Span(file, meta.line, meta.column, meta.line, meta.column + 1)
                raise SpecError(
                    [
                        Diagnostic(
                            "E407",
                            f"this is nested more than {max_nesting} levels deep (groups, "
                            "repeats, shared bodies and arithmetic count)",
                            span,
                            hint="raise the limit with --max-nesting",
                        )
                    ]
                )
        todo.extend((child, depth) for child in node.children if isinstance(child, Tree))
