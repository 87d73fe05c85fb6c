"""Text to AST: the Lark LALR parser, a Transformer that builds the AST, and
syntax errors turned into located diagnostics."""

from __future__ import annotations

import gc
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken

from netspec.diagnostics import Diagnostic, Note, Span, SpecError, did_you_mean
from netspec.limits import Limits
from netspec.syntax import ast
from netspec.syntax.bounds import check_lexemes, check_nesting

KEYWORDS = ("use", "const", "table", "kernel", "block", "network", "train", "shared", "output")


def grammar_text() -> str:
    """The grammar ships inside the wheel; in a source checkout it sits beside the package."""
    packaged = resources.files("netspec") / "grammar" / "netspec.lark"
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return (Path(__file__).parents[2] / "grammar" / "netspec.lark").read_text(encoding="utf-8")


@cache
def lark_parser() -> Lark:
    return Lark(grammar_text(), parser="lalr", propagate_positions=True, maybe_placeholders=True)


def _span(file: str, meta: Any) -> Span:
    if getattr(meta, "empty", False):
        return Span(file, 0, 0, 0, 0)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


def _tok_span(file: str, tok: Token, trim: int = 0) -> Span:
    end_col = (tok.end_column or tok.column or 1) - trim
    return Span(file, tok.line or 0, tok.column or 0, tok.end_line or 0, end_col)


class _Alias(str):
    """Marks the `as NAME` child of a stage."""


class _Augment(tuple[ast.Op, ...]):
    """Marks the `augment { ... }` child of a train section."""


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"\d+", text) else float(text)


@v_args(meta=True)
class _Builder(Transformer[Token, ast.Module]):
    """Builds AST nodes; never raises (checks belong to later passes)."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    def _s(self, meta: Any) -> Span:
        return _span(self.file, meta)

    def _value(self, child: Any) -> Any:
        if isinstance(child, Token):
            span = _tok_span(self.file, child)
            if child.type == "SIZE":
                return ast.Size(dims=tuple(int(d) for d in child.split("x")), span=span)
            if child.type == "QUANTITY":
                m = re.fullmatch(r"([\d.]+)(deg|px|%)", str(child))
                assert m is not None
                return ast.Quantity(value=float(m[1]), unit=m[2], span=span)
        return child

    # -- top level
    def start(self, meta: Any, items: list[Any]) -> ast.Module:
        return ast.Module(file=self.file, items=tuple(items), span=self._s(meta))

    def use(self, meta: Any, c: list[Token]) -> ast.Use:
        return ast.Use(path=str(c[0])[1:-1], span=self._s(meta))

    def const(self, meta: Any, c: list[Any]) -> ast.Const:
        return ast.Const(name=str(c[0]), value=self._value(c[1]), span=self._s(meta))

    def table(self, meta: Any, c: list[Any]) -> ast.Table:
        return ast.Table(name=str(c[0]), matrix=c[1], span=self._s(meta))

    def kernel(self, meta: Any, c: list[Any]) -> ast.Kernel:
        divisor = None
        if c[2] is not None:  # a zero divisor is left for `define` to refuse
            divisor = ast.Num(value=_number(c[2]), span=_tok_span(self.file, c[2]))
        return ast.Kernel(name=str(c[0]), matrix=c[1], divisor=divisor, span=self._s(meta))

    def matrix(self, meta: Any, rows: list[tuple[float, ...]]) -> ast.Matrix:
        return ast.Matrix(rows=tuple(rows), span=self._s(meta))

    def mrow(self, meta: Any, nums: list[float]) -> tuple[float, ...]:
        return tuple(nums)

    def mnum(self, meta: Any, c: list[Token]) -> int | float:
        return -_number(c[1]) if len(c) == 2 else _number(c[0])

    # -- networks and blocks
    def network(self, meta: Any, c: list[Any]) -> ast.Network:
        name = str(c[0]).rstrip("(")
        return ast.Network(name=name, inputs=c[1], body=c[2], span=self._s(meta))

    def inputs(self, meta: Any, c: list[ast.Input]) -> tuple[ast.Input, ...]:
        return tuple(c)

    def input(self, meta: Any, c: list[Token]) -> ast.Input:
        dims = tuple(int(d) if d.isdigit() else d for d in str(c[1]).split("x"))
        return ast.Input(name=str(c[0]), shape=dims, span=self._s(meta))

    def block(self, meta: Any, c: list[Any]) -> ast.Block:
        params = c[1] if c[1] is not None else ()
        return ast.Block(name=str(c[0]).rstrip("("), params=params, body=c[2], span=self._s(meta))

    def params(self, meta: Any, c: list[ast.Param]) -> tuple[ast.Param, ...]:
        return tuple(c)

    def param(self, meta: Any, c: list[Any]) -> ast.Param:
        default = self._value(c[1]) if c[1] is not None else None
        return ast.Param(name=str(c[0]), default=default, span=self._s(meta))

    def body(self, meta: Any, c: list[Any]) -> tuple[Any, ...]:
        return tuple(c)

    def chain_stmt(self, meta: Any, c: list[ast.Chain]) -> ast.ChainStmt:
        return ast.ChainStmt(chain=c[0], span=self._s(meta))

    def assign(self, meta: Any, c: list[Any]) -> ast.Assign:
        return ast.Assign(target=str(c[0]), chain=c[1], span=self._s(meta))

    def shared(self, meta: Any, c: list[Any]) -> ast.Shared:
        body = c[1]
        if isinstance(body, ast.Chain):
            body = (ast.ChainStmt(chain=body, span=body.span),)
        return ast.Shared(name=str(c[0]), body=body, span=self._s(meta))

    def output(self, meta: Any, c: list[Token]) -> ast.Output:
        names = tuple(ast.Name(name=str(t), span=_tok_span(self.file, t)) for t in c)
        return ast.Output(names=names, span=self._s(meta))

    def chain(self, meta: Any, c: list[Any]) -> ast.Chain:
        return ast.Chain(stages=tuple(c), span=self._s(meta))

    def _split_alias(self, c: list[Any]) -> tuple[list[Any], str | None]:
        if c and isinstance(c[-1], _Alias):
            return c[:-1], str(c[-1])
        if c and c[-1] is None:
            return c[:-1], None
        return c, None

    def op(self, meta: Any, c: list[Any]) -> ast.Op:
        rest, alias = self._split_alias(c)
        name_tok = rest[0]
        return ast.Op(
            name=str(name_tok),
            name_span=_tok_span(self.file, name_tok),
            args=tuple(rest[1:]),
            alias=alias,
            span=self._s(meta),
        )

    def call(self, meta: Any, c: list[Any]) -> ast.Call:
        rest, alias = self._split_alias(c)
        name_tok = rest[0]
        args = rest[1] if len(rest) > 1 and rest[1] is not None else ()
        return ast.Call(
            name=str(name_tok)[:-1],
            name_span=_tok_span(self.file, name_tok, trim=1),
            args=args,
            alias=alias,
            span=self._s(meta),
        )

    def group(self, meta: Any, c: list[Any]) -> ast.Group:
        rest, alias = self._split_alias(c)
        return ast.Group(
            name=str(rest[0]),
            name_span=_tok_span(self.file, rest[0]),
            branches=rest[1],
            alias=alias,
            span=self._s(meta),
        )

    def branches(self, meta: Any, c: list[ast.Chain]) -> tuple[ast.Chain, ...]:
        return tuple(c)

    def repeat(self, meta: Any, c: list[Any]) -> ast.Repeat:
        return ast.Repeat(count=c[0], stage=c[1], span=self._s(meta))

    def alias(self, meta: Any, c: list[Token]) -> _Alias:
        return _Alias(str(c[0]))

    # -- arguments and values
    def arg(self, meta: Any, c: list[Any]) -> ast.Arg:
        if isinstance(c[0], ast.Arg):
            return c[0]
        return ast.Arg(value=self._value(c[0]), span=self._s(meta))

    carg = arg

    def kwarg(self, meta: Any, c: list[Any]) -> ast.Arg:
        return ast.Arg(name=str(c[0]), value=self._value(c[1]), span=self._s(meta))

    def callargs(self, meta: Any, c: list[ast.Arg]) -> tuple[ast.Arg, ...]:
        return tuple(c)

    def vrange(self, meta: Any, c: list[Any]) -> ast.Range:
        low, high = (self._value(x) for x in c)
        return ast.Range(low=low, high=high, span=self._s(meta))

    def vlist(self, meta: Any, c: list[Any]) -> ast.ListValue:
        items = tuple(self._value(x) for x in c if x is not None)
        return ast.ListValue(items=items, span=self._s(meta))

    def _bin(self, op: str, meta: Any, c: list[Any]) -> ast.BinOp:
        left, right = c[0], c[-1]
        return ast.BinOp(op=op, left=left, right=right, span=self._s(meta))

    def add(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("+", meta, c)

    def sub(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("-", meta, c)

    def mul(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("*", meta, c)

    def floordiv(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("//", meta, c)

    def truediv(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("/", meta, c)

    def mod(self, meta: Any, c: list[Any]) -> ast.BinOp:
        return self._bin("%", meta, c)

    def neg(self, meta: Any, c: list[Any]) -> ast.Neg:
        return ast.Neg(operand=c[-1], span=self._s(meta))

    def num(self, meta: Any, c: list[Token]) -> ast.Num:
        return ast.Num(value=_number(c[0]), span=self._s(meta))

    def name(self, meta: Any, c: list[Token]) -> ast.Name:
        return ast.Name(name=str(c[0]), span=self._s(meta))

    # -- training
    def train(self, meta: Any, c: list[Any]) -> ast.Train:
        settings = [s for s in c[2] if isinstance(s, ast.Op)]
        augment = next((s for s in c[2] if isinstance(s, _Augment)), ())
        return ast.Train(
            network=str(c[0]),
            dataset=str(c[1]),
            dataset_span=_tok_span(self.file, c[1]),
            settings=tuple(settings),
            augment=tuple(augment),
            span=self._s(meta),
        )

    def settings(self, meta: Any, c: list[Any]) -> list[Any]:
        return c

    def augment(self, meta: Any, c: list[Any]) -> _Augment:
        return _Augment(c[0])

    def augments(self, meta: Any, c: list[ast.Op]) -> list[ast.Op]:
        return c


# ---- syntax errors -------------------------------------------------------------

_TERMINAL_WORDS = {
    "NAME": "a name",
    "CALLNAME": "a call such as 'basic('",
    "NUMBER": "a number",
    "SIZE": "a size such as 3x3",
    "SHAPE": "a shape such as 1x28x28",
    "QUANTITY": "a quantity such as 15deg",
    "STRING": 'a quoted path such as "blocks.net"',
    "_NL": "the end of the line",
    "_PIPE": "'|'",
    "$END": "the end of the file",
    "NEG": "'-'",
}
_TOP_LEVEL = ("use", "const", "table", "kernel", "block", "network", "train")
_PAIRS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {"RPAR": ")", "RSQB": "]", "RBRACE": "}"}
_CHAR_HINTS = {
    "\t": "tabs are allowed only as indentation",
    "'": 'a path is written in double quotes, e.g. use "blocks.net"',
    '"': "a quoted path must end on the same line",
    ".": "a decimal number needs digits on both sides of the point, e.g. 0.5",
}


@dataclass(frozen=True)
class _Known:
    """A kind of syntax error, recognised as in Lark's `match_examples`: a parse failure
    in the same parser state, on the same kind of token, as one of the examples.

    `message` and `hint` may name `{word}`, the last word before the failure;
    `caret` puts the caret on that word, on the character just before, or on the token.
    """

    message: str
    hint: str
    examples: tuple[str, ...]
    caret: Literal["token", "word", "char"] = "token"


def _in_net(*lines: str) -> str:
    return "network n(x: 1x8x8) {\n" + "\n".join(lines) + "\n}\n"


_KNOWN = (
    _Known(
        "'{word}' is a keyword and cannot be used as a name",
        "choose another name, e.g. '{word}_'",
        (
            _in_net("output = relu"),
            _in_net("output | relu"),
            _in_net("shared = relu"),
            _in_net("shared | relu"),
            _in_net("repeat = relu"),
        ),
        caret="word",
    ),
    _Known(
        "a chain cannot end with '|'",
        "add a stage after the '|', or remove it",
        (
            *(
                _in_net(*lines)
                for chain in ("relu |", "relu | relu |", "x = relu |", "x = relu | relu |")
                for lines in ((chain,), (chain, "relu"), (chain + " }",), ("concat {", chain, "}"))
            ),
            "network n(x: 1x8x8) {\nrelu |",
            "network n(x: 1x8x8) {\nrelu | relu |",
        ),
        caret="char",
    ),
    _Known(
        "'{word}=' needs a value",
        "write a value after '=', e.g. stride=2",
        (_in_net("conv 1 1x1 pad="), _in_net("conv 1 1x1 pad= | relu")),
        caret="word",
    ),
    _Known(
        "'{word}' needs a name",
        "e.g. '{word} NAME = ...'",
        ("const = 1\n", "table = [1]\n", "kernel = [1]\n"),
        caret="word",
    ),
    _Known(
        "'repeat' needs a count and a stage",
        "e.g. 'repeat 3 conv 16 3x3 pad=same'",
        (_in_net("repeat"), _in_net("repeat 2"), _in_net("repeat 2 | relu")),
        caret="word",
    ),
)


@cache
def _signatures() -> dict[tuple[Any, str], _Known]:
    """(parser state, token type) of each catalogue example's failure -> its kind."""
    found: dict[tuple[Any, str], _Known] = {}
    for known in _KNOWN:
        for example in known.examples:
            try:
                lark_parser().parse(example)
            except UnexpectedToken as e:
                found.setdefault((e.state.position, e.token.type), known)
    return found


_VALUE_STARTS = {"NUMBER", "NAME", "NEG", "LPAR", "LSQB", "SIZE", "QUANTITY"}


def _describe_expected(parser: Lark, names: set[str]) -> str:
    """What the parser would have accepted, in words (any start of a value is 'a value')."""
    words: list[str] = []
    if {"NUMBER", "NAME", "LPAR"} <= names:
        names = names - _VALUE_STARTS
        words.append("a value")
    for name in sorted(names):
        if name in _TERMINAL_WORDS:
            words.append(_TERMINAL_WORDS[name])
            continue
        try:
            pattern = parser.get_terminal(name).pattern
        except KeyError:
            continue
        words.append(f"'{pattern.value}'" if pattern.type == "str" else name.lower())
    words = sorted(set(words))
    if len(words) > 6:
        words = [*words[:6], "..."]
    return ", ".join(words)


def _at_end(tok: Token, text: str) -> bool:
    """The end of the file, or a last newline with nothing after it."""
    return tok.type == "$END" or (tok.type == "_NL" and not text[tok.start_pos or 0 :].strip())


def _token_words(tok: Token, text: str) -> str:
    if _at_end(tok, text):
        return "end of file"
    if tok.type in ("_NL", "_PIPE") and "\n" in str(tok):
        return "end of line"
    return f"'{tok}'"


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _open_brackets(text: str, end: int) -> list[tuple[str, int]]:
    """The brackets still open at offset `end` (comments and strings skipped), innermost last;
    a stray closer is returned as the last entry."""
    stack: list[tuple[str, int]] = []
    i = 0
    while i < end:
        ch = text[i]
        if ch in '#"':
            stop = text.find("\n" if ch == "#" else '"', i + 1)
            i = end if stop < 0 else stop + 1
            continue
        if ch in _PAIRS:
            stack.append((ch, i))
        elif stack and _PAIRS[stack[-1][0]] == ch:
            stack.pop()
        i += 1
    return stack


def _char_span(file: str, text: str, pos: int) -> Span:
    line, col = _line_col(text, pos)
    return Span(file, line, col, line, col + 1)


def _eof_span(text: str, file: str) -> Span:
    body = text.rstrip()
    line, col = _line_col(text, len(body))
    return Span(file, line, col, line, col + 1)


def _token_span(tok: Token, text: str, file: str) -> Span:
    """The token's span; a newline token points just past the end of its line."""
    if tok.type == "$END":
        return _eof_span(text, file)
    if tok.type in ("_NL", "_PIPE") and "\n" in str(tok):
        start = tok.start_pos or 0
        return _char_span(file, text, start + len(text[start:].split("\n", 1)[0]))
    return _tok_span(file, tok)


def _word_before(text: str, pos: int) -> tuple[str, int]:
    """The last word before `pos` and its offset ('' and the last non-space character if none)."""
    before = text[:pos].rstrip()
    m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\W*$", before)
    if m is None:
        return "", max(len(before) - 1, 0)
    return m[1], m.start(1)


def _from_catalogue(e: UnexpectedToken, text: str, file: str) -> Diagnostic | None:
    known = _signatures().get((e.state.position, e.token.type))
    if known is None:
        return None
    pos = e.token.start_pos if e.token.type != "$END" else len(text)
    word, at = _word_before(text, pos if pos is not None else len(text))
    if known.caret == "word":
        line, col = _line_col(text, at)
        span = Span(file, line, col, line, col + max(len(word), 1))
    elif known.caret == "char":
        span = _char_span(file, text, len(text[:pos].rstrip()) - 1)
    else:
        span = _token_span(e.token, text, file)
    fill = {"word": word}
    return Diagnostic("E002", known.message.format(**fill), span, hint=known.hint.format(**fill))


def _unclosed(e: UnexpectedToken, text: str, file: str) -> Diagnostic | None:
    """A bracket left open: at the end of the file, or before a token that needs it closed."""
    pos = len(text) if e.token.type == "$END" else (e.token.start_pos or 0)
    stack = _open_brackets(text, pos)
    if not stack:
        return None
    opener, at = stack[-1]
    closer = _PAIRS[opener]
    word = str(e.token).strip()
    opened = _char_span(file, text, at)
    if _at_end(e.token, text):
        message = f"unexpected end of file: the '{opener}' on line {opened.line} is never closed"
    elif word in _TOP_LEVEL:
        message = (
            f"'{word}' cannot appear inside '{opener} {closer}': the '{opener}' on line "
            f"{opened.line} is never closed"
        )
    elif any(_CLOSERS[t] == closer for t in e.expected & _CLOSERS.keys()):
        message = f"expected '{closer}' to close the '{opener}', got {_token_words(e.token, text)}"
    else:
        return None
    return Diagnostic(
        "E003",
        message,
        _token_span(e.token, text, file),
        hint=f"add the missing '{closer}'",
        notes=(Note(f"the '{opener}' opened here", opened),),
    )


def _unexpected_token(e: UnexpectedToken, text: str, file: str) -> Diagnostic:
    tok = e.token
    span = _token_span(tok, text, file)
    if tok.type in _CLOSERS:
        stack = _open_brackets(text, tok.start_pos or 0)
        if not stack or _PAIRS[stack[-1][0]] != str(tok):
            return Diagnostic(
                "E003",
                f"unmatched '{tok}'",
                span,
                hint=f"remove it, or add the '{_opener(str(tok))}' it closes",
            )
    diag = _from_catalogue(e, text, file) or _unclosed(e, text, file)
    if diag is not None:
        return diag
    hint = f"expected {_describe_expected(lark_parser(), set(e.expected))}"
    if "NETWORK" in e.expected and tok.type in ("NAME", "CALLNAME"):
        hint = "stages belong inside 'network NAME(input: SHAPE) { ... }' or a block"
    lines = text.split("\n")
    line = lines[span.line - 1] if 1 <= span.line <= len(lines) else ""
    first = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)", line)
    if first and first[1] not in KEYWORDS:
        hint = did_you_mean(first[1], KEYWORDS) or hint
    return Diagnostic("E002", f"unexpected {_token_words(tok, text)}", span, hint=hint)


def _opener(closer: str) -> str:
    return next(o for o, c in _PAIRS.items() if c == closer)


def syntax_diagnostic(e: UnexpectedInput, text: str, file: str) -> Diagnostic:
    """One located, worded diagnostic for a Lark parse failure."""
    if isinstance(e, UnexpectedToken):
        return _unexpected_token(e, text, file)
    if isinstance(e, UnexpectedEOF):
        return Diagnostic("E002", "unexpected end of file", _eof_span(text, file))
    assert isinstance(e, UnexpectedCharacters)
    pos = e.pos_in_stream or 0
    char = text[pos] if pos < len(text) else ""
    span = _char_span(file, text, pos)
    hint = _CHAR_HINTS.get(char, "names use letters, digits and '_'; sizes are written like 5x5")
    return Diagnostic("E001", f"unexpected character {char!r}", span, hint=hint)


def parse(text: str, file: str = "<string>", limits: Limits | None = None) -> ast.Module:
    """Parse one file's text; raise SpecError with a located diagnostic on a syntax error,
    a number too large to be meant, or a file over the token or nesting limit."""
    limits = limits or Limits()
    check_lexemes(text, file, limits.max_tokens)
    # The parser makes many small objects that all live until the end: pausing the cyclic
    # collector keeps long specs linear (a 10,000-line chain parses twice as fast).
    collecting = gc.isenabled()
    gc.disable()
    try:
        tree = lark_parser().parse(text)
        check_nesting(tree, file, limits.max_nesting)
        return _Builder(file).transform(tree)
    except UnexpectedInput as e:
        raise SpecError([syntax_diagnostic(e, text, file)]) from None
    finally:
        if collecting:
            gc.enable()


__all__ = ["grammar_text", "parse"]
