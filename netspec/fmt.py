"""`netspec fmt`'s formatter: one layout for every spec, like gofmt, and no options.

It lays out the parser's own tokens rather than printing the AST, so every number, name
and comment is written exactly as it was: only the spaces between tokens, the
indentation, blank lines and the breaks of over-long chains change. The line breaks a
person wrote are kept (they end statements), so each comment stays on its line: a comment
of its own line before the line it preceded, a trailing one at its line's end. The rules,
for people, are in docs/language.md ("Formatting"). `format_text` checks its own output:
parsed again, it must give the same definitions and the same comments.

>>> print(format_text("network n(x:1x8x8){\\n  conv 4 3x3|relu   # two\\n dense 10 # out\\n}"))
network n(x: 1x8x8) {
    conv 4 3x3 | relu  # two
    dense 10           # out
}
<BLANKLINE>
"""

from __future__ import annotations

import bisect
import gc
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Literal

from lark import Lark, Token, Tree

from netspec.errors import NetspecError
from netspec.syntax import ast
from netspec.syntax.grammar import grammar_text
from netspec.syntax.parser import parse

_CLOSERS = ("]", ")")
WIDTH = 100  # a chain longer than this (indentation and code, not its comment) is broken
INDENT = 4

# Where a binary operator is written tight (`c*4`): between arguments separated by spaces,
# where `c * 4` would read as three; elsewhere (a call's arguments, a const) as written.
_BINARY = frozenset({"add", "sub", "mul", "floordiv", "truediv", "mod"})
_SPACE_SEPARATED = frozenset({"op", "repeat"})
# A computed size (`(B*5 + C)x7x7`) keeps its operators as written: its parentheses already
# hold each part together.
_AS_WRITTEN = frozenset({"callargs", "const", "param", "size"})
_SPACED_SIZE = "spaced_size"  # a size that is not one word (`_one_word`), laid out spaced
_ASSIGNING = frozenset({"assign", "shared"})  # a `|` continuing these goes under the `=`
_OPERATORS = frozenset({"+", "-", "*", "//", "/", "%"})
_NO_SPACE_AFTER = frozenset({"(", "[", ".", ".."})
_NO_SPACE_BEFORE = frozenset({")", "]", ",", ";", ":", ".", ".."})
_SPACING = frozenset({" ", "\t", "\f", "\\", "\r", "\n"})  # around an operator written spaced
_GAP = re.compile(r"#[^\n]*|\\(?=\r?\n)")  # what the lexer skips that a reader sees


class FormatError(NetspecError):
    """The formatted text would not mean what the original did: a bug in netspec fmt, never
    written out."""


@dataclass(frozen=True)
class _Tok:
    """A token as it is printed: its text, the rule that holds it, and its spacing."""

    text: str
    rule: str
    bare_before: bool = False  # no space before it (`,`, `)`, the `=` of `pad=same`)
    bare_after: bool = False  # no space after it (`(`, a unary `-`)


@dataclass
class _Line:
    """One line of the source: its tokens, its comment, and whether it ends in `\\`."""

    tokens: list[_Tok] = field(default_factory=list)
    comment: str | None = None
    backslash: bool = False


@dataclass
class _Out:
    """One line of the result, before blank lines are settled and comments aligned."""

    kind: Literal["code", "comment", "blank"]
    depth: int  # braces around it: consecutive code lines of one depth align comments
    text: str = ""  # indentation included
    comment: str | None = None
    opens: bool = False  # ends with `{`
    closes: bool = False  # starts with `}`
    joins: bool = False  # ends with a backslash: a blank line after it ends its statement


def format_text(text: str, file: str = "<string>") -> str:
    """`text` formatted; SpecError (located in `file`) if it does not parse."""
    # Parsing makes many objects that live to the end: pausing the cyclic collector, as
    # the parser does, formats a long spec in two thirds of the time.
    collecting = gc.isenabled()
    gc.disable()
    try:
        module = parse(text, file)
        tree = _parser().parse(text)
        result = _assemble(_Layout().run(_lines(text, _tokens(tree, text))))
        _check(module, result, file)
    finally:
        if collecting:
            gc.enable()
    return result


@cache
def _parser() -> Lark:
    """The grammar's parser, keeping every token (punctuation and newlines too)."""
    return Lark(grammar_text(), parser="lalr", keep_all_tokens=True, maybe_placeholders=True)


def _check(module: ast.Module, result: str, file: str) -> None:
    """FormatError unless `result` parses to the definitions and comments of `module`."""
    again = parse(result, file)
    said = [c.text.rstrip() for c in module.comments]
    if again.items != module.items or [c.text for c in again.comments] != said:
        raise FormatError(
            f"netspec fmt would change what {file} says, so it leaves it as it is",
            hint="this is a bug in netspec fmt: please report it with the file",
        )


# ---- tokens and lines --------------------------------------------------------------------


def _tokens(tree: Tree[Token], text: str) -> Iterator[tuple[int, int, _Tok]]:
    """Every visible token in order, as (start, end, token): newlines left out, and a `|`
    that continues a line is its `|` alone (the newlines and comments before it are
    in the text between tokens, like any others)."""
    stack: list[tuple[Tree[Token] | Token, str, bool]] = [(tree, "start", False)]
    previous = ""
    while stack:
        node, rule, tight = stack.pop()
        if isinstance(node, Tree):
            rule = str(node.data)
            tight = rule in _SPACE_SEPARATED or (tight and rule not in _AS_WRITTEN)
            if rule == "size" and not _one_word(node):
                rule = _SPACED_SIZE
            stack += [(c, rule, tight) for c in reversed(node.children) if c is not None]
            continue
        if node.type == "_NL":
            continue
        start, end = node.start_pos or 0, node.end_pos or 0
        if node.type == "_PIPE":
            start = end - 1
        word = text[start:end]
        spaced = text[start - 1 : start] in _SPACING or text[end : end + 1] in _SPACING
        # `2 % 3` stays spaced: `2%` would be a quantity
        tok = _token(word, node.type, rule, tight and (word, previous) != ("%", "NUMBER"), spaced)
        previous = node.type
        yield start, end, tok


def _one_word(size: Tree[Token]) -> bool:
    """Whether a size can be written as one word: each number in it whole and all of it on
    one line. `3 x 1.5` (an error the compiler reports, E205) and a size continued onto
    the next line (`0 x 0 \\` then `x 0`) keep their spaces, since `3x1.5` and a line
    that starts `x0` would not parse as they did."""
    tokens = [c for c in size.children if isinstance(c, Token)]
    whole = all(c.isdigit() for c in tokens if c.type == "NUMBER")
    return whole and len({c.line for c in tokens}) == 1


def _token(word: str, kind: str, rule: str, tight: bool, spaced: bool) -> _Tok:
    """The token `word` with its spacing, from the rule that holds it: a binary operator
    is `tight`, or else `spaced` as it was written."""
    if rule in _BINARY and word in _OPERATORS:
        bare = tight or not spaced
        return _Tok(word, rule, bare, bare)
    if word == "=":
        bare = rule in ("kwarg", "param", "kwlist")
        return _Tok(word, rule, bare, bare)
    if word == "," and rule == "kwlist":  # `mean=0.49,0.48,0.45`: one value, one word
        return _Tok(word, rule, True, True)
    if word == "(" and rule in ("network", "block"):  # `network n (x: ...)`: NAME "("
        return _Tok(word, rule, True, True)
    if kind == "_X":  # a computed size is one word: `(c)x3`, `-1x(h)`
        bare = rule != _SPACED_SIZE
        return _Tok(word, rule, bare, bare)
    unary = kind == "NEG" and rule in ("neg", "mnum", "size", _SPACED_SIZE)
    return _Tok(
        word,
        rule,
        word in _NO_SPACE_BEFORE,
        word in _NO_SPACE_AFTER or unary or kind == "CALLNAME",
    )


def _lines(text: str, tokens: Iterator[tuple[int, int, _Tok]]) -> list[_Line]:
    """The source's lines, each with its tokens, its comment and its `\\`: what lies
    between tokens is whitespace, comments and line continuations, nothing else."""
    starts = [0, *(m.end() for m in re.finditer("\n", text))]
    lines = [_Line() for _ in starts]

    def gap(begin: int, stop: int) -> None:
        for m in _GAP.finditer(text, begin, stop):
            line = lines[bisect.bisect_right(starts, m.start()) - 1]
            if m[0] == "\\":
                line.backslash = True
            else:
                line.comment = m[0].rstrip()

    done = 0
    for start, end, tok in tokens:
        gap(done, start)
        lines[bisect.bisect_right(starts, start) - 1].tokens.append(tok)
        done = end
    gap(done, len(text))
    return lines


def _render(tokens: list[_Tok]) -> tuple[str, list[int]]:
    """The tokens on one line, and where each starts."""
    parts: list[str] = []
    cols: list[int] = []
    width = 0
    for i, tok in enumerate(tokens):
        if i:
            before = tokens[i - 1]
            bare = before.bare_after or tok.bare_before or (before.text, tok.text) == ("{", "}")
            if not bare:
                parts.append(" ")
                width += 1
        cols.append(width)
        parts.append(tok.text)
        width += len(tok.text)
    return "".join(parts), cols


def _segments(tokens: list[_Tok]) -> list[list[_Tok]]:
    """The line cut before each `|` outside brackets: where a long chain may break."""
    segments: list[list[_Tok]] = [[]]
    open_brackets = 0
    for i, tok in enumerate(tokens):
        if tok.text == "|" and i and not open_brackets:
            segments.append([])
        if tok.text in ("[", "{") or tok.text.endswith("("):
            open_brackets += 1
        elif tok.text in (")", "]", "}") and open_brackets:
            open_brackets -= 1
        segments[-1].append(tok)
    return segments


def _equals_column(tokens: list[_Tok]) -> int:
    """Where the `=` of `x = ...` or `shared x = ...` sits on its line (0 without one)."""
    _, cols = _render(tokens)
    found = (c for c, t in zip(cols, tokens, strict=True) if t.text == "=" and t.rule in _ASSIGNING)
    return next(found, 0)


def _pieces(tokens: list[_Tok], indent: int, cont: int) -> list[tuple[int, list[_Tok]]]:
    """The line as (indentation, tokens) pieces: itself if it fits in WIDTH, else as many
    of its stages as fit on each line, the next lines starting with `|` at `cont`."""
    if indent + len(_render(tokens)[0]) <= WIDTH:
        return [(indent, tokens)]
    first, *rest = _segments(tokens)
    pieces = [(indent, first)]
    for segment in rest:
        at, joined = pieces[-1][0], pieces[-1][1] + segment
        if at + len(_render(joined)[0]) <= WIDTH:
            pieces[-1] = (at, joined)
        else:
            pieces.append((cont, segment))
    return pieces


# ---- layout ------------------------------------------------------------------------------


class _Layout:
    """Indents the source's lines one by one: by the braces around them, under the `=` of
    the statement they continue (a line starting with `|`), 4 deeper after a `\\`, and
    after the `[` of a matrix or the `(` of a call that spans lines."""

    def __init__(self) -> None:
        self.out: list[_Out] = []
        self.depth = 0
        self.brackets: list[tuple[int, bool, int]] = []  # `[` still open: column, hanging, base
        self.statements: dict[int, tuple[int, int]] = {}  # depth -> indent, column of a `|`
        self.waiting: list[_Out] = []  # comment lines, indented as the code line after them
        self.continued = False  # the line before ended with `\`

    def run(self, lines: list[_Line]) -> list[_Out]:
        for line in lines:
            if line.tokens or line.backslash:
                self.code(line)
                continue
            if line.comment is None:
                self.out.append(_Out("blank", self.depth))
            else:
                self.waiting.append(_Out("comment", self.depth, comment=line.comment))
                self.out.append(self.waiting[-1])
            self.continued = False
        self.place_waiting(INDENT * self.depth)
        return self.out

    def place_waiting(self, indent: int) -> None:
        for out in self.waiting:
            out.text = " " * indent
        self.waiting = []

    def statement(self, depth: int) -> tuple[int, int]:
        return self.statements.get(depth, (INDENT * depth, INDENT * depth))

    def indent(self, tokens: list[_Tok], closers: int) -> tuple[int, bool]:
        """The line's indentation, and whether it starts a statement."""
        first = tokens[0].text if tokens else ""
        if self.brackets:
            col, hanging, base = self.brackets[-1]
            if hanging:
                return base + (0 if first in _CLOSERS else INDENT), False
            return col + (0 if first in _CLOSERS else 1), False
        if closers:
            return INDENT * (self.depth - closers), False
        if first == "|":
            return self.statement(self.depth)[1], False
        if self.continued:
            return self.statement(self.depth)[0] + INDENT, False
        return INDENT * self.depth, True

    def code(self, line: _Line) -> None:
        tokens = line.tokens
        closers = next((i for i, t in enumerate(tokens) if t.text != "}"), len(tokens))
        indent, starts = self.indent(tokens, closers)
        depth = self.depth - closers
        if starts:
            self.statements[depth] = (indent, indent + _equals_column(tokens))
        self.place_waiting(INDENT * self.depth if closers else indent)
        for i, (at, piece) in enumerate(_pieces(tokens, indent, self.statement(depth)[1])):
            text, cols = _render(piece)
            self.out.append(_Out("code", depth, " " * at + text, closes=i == 0 and closers > 0))
            self.track_brackets(piece, cols, at)
        last = self.out[-1]
        last.comment = line.comment
        last.opens = bool(tokens) and tokens[-1].text == "{"
        if line.backslash:
            last.text += " \\" if tokens else "\\"
            last.joins = True
        self.enter(sum(t.text == "{" for t in tokens) - sum(t.text == "}" for t in tokens))
        self.continued = line.backslash

    def enter(self, change: int) -> None:
        """Move `change` braces in or out; the statements of blocks left behind are gone."""
        if change:
            shallower = min(self.depth, self.depth + change)
            self.statements = {d: s for d, s in self.statements.items() if d <= shallower}
            self.depth += change

    def track_brackets(self, tokens: list[_Tok], cols: list[int], at: int) -> None:
        """Keep the `[` and `(` (a call's name holds its `(`) still open after this line."""
        for i, (tok, col) in enumerate(zip(tokens, cols, strict=True)):
            if tok.text == "[" or tok.text.endswith("("):
                where = at + col + len(tok.text) - 1
                self.brackets.append((where, i == len(tokens) - 1, at))
            elif tok.text in _CLOSERS and self.brackets:
                self.brackets.pop()


def _assemble(out: list[_Out]) -> str:
    """The lines as text: blank lines settled, trailing comments aligned."""
    lines = _settle_blanks(out)
    for run in _runs(lines):
        column = max(len(o.text) for o in run if o.comment is not None) + 2
        for o in run:
            if o.comment is not None:
                o.text = o.text.ljust(column) + o.comment
    for o in lines:
        if o.kind == "comment":
            o.text += o.comment or ""
    return "".join(o.text + "\n" for o in lines)


def _settle_blanks(out: list[_Out]) -> list[_Out]:
    """At most one blank line in a row; none at the start or end, after a `{` or before a
    `}`, unless it follows a `\\` (there it ends a statement)."""
    kept: list[_Out] = []
    following: list[_Out | None] = [None] * len(out)
    after: _Out | None = None
    for i in range(len(out) - 1, -1, -1):
        following[i] = after
        if out[i].kind != "blank":
            after = out[i]
    for o, nxt in zip(out, following, strict=True):
        if o.kind == "blank" and (
            not kept
            or kept[-1].kind == "blank"
            or (not kept[-1].joins and (kept[-1].opens or nxt is None or nxt.closes))
        ):
            continue
        kept.append(o)
    return kept


def _runs(lines: list[_Out]) -> Iterator[list[_Out]]:
    """Runs of consecutive code lines at one depth that hold a trailing comment."""
    run: list[_Out] = []
    for o in [*lines, _Out("blank", -1)]:
        if o.kind != "code" or (run and o.depth != run[0].depth):
            if any(r.comment is not None for r in run):
                yield run
            run = []
        if o.kind == "code":
            run.append(o)
