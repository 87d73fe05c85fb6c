"""Text to AST: the bounds checked first (syntax/bounds.py), the Lark LALR parser
(syntax/grammar.py), a Transformer that builds the AST, and syntax errors turned into
located diagnostics (syntax/messages.py). The comments the lexer passed over come with the
Module, each with its span:

>>> [(c.text, c.span.line, c.span.col) for c in parse("const a = 1  # one\\n# end").comments]
[('# one', 1, 14), ('# end', 2, 1)]
"""

from __future__ import annotations

import gc
import re
from typing import Any

from lark import Token, Transformer, v_args
from lark.exceptions import UnexpectedInput

from netspec.diagnostics import Span, SpecError
from netspec.limits import Limits
from netspec.syntax import ast
from netspec.syntax.bounds import check_lexemes, check_nesting
from netspec.syntax.grammar import comments_kept, grammar_text, lark_parser, tok_span
from netspec.syntax.messages import KEYWORDS, syntax_diagnostic


def _span(file: str, meta: Any) -> Span:
    if getattr(meta, "empty", False):
        return Span(file, 0, 0, 0, 0)
    return Span(file, meta.line, meta.column, meta.end_line, meta.end_column)


_COMMENT = re.compile(r"#[^\n]*")


def _comments(tokens: list[Token], file: str) -> tuple[ast.Comment, ...]:
    """The comments in the tokens the lexer kept: a COMMENT token is one, a `_PIPE` token
    holds one per comment line it crossed (placed by the newlines before it)."""
    found = []
    for tok in tokens:
        for m in _COMMENT.finditer(tok):
            start = m.start()
            lines = tok.count("\n", 0, start)
            line = (tok.line or 1) + lines
            col = start - tok.rfind("\n", 0, start) if lines else (tok.column or 1) + start
            text = m[0].rstrip("\r")
            span = Span(file, line, col, line, col + len(text))
            found.append(ast.Comment(text=text, span=span))
    return tuple(found)


class _Alias(str):
    """Marks the `as NAME` child of a stage."""


class _Augment(tuple[ast.Op, ...]):
    """Marks the `augment { ... }` child of a train section."""


def _staged(value: Any) -> Any:
    """A stage given as a block's argument (`act=leaky_relu 0.2`, `unit=basic(64)`): the
    chain of that one stage, as `ast.Arg` keeps a chain."""
    if isinstance(value, ast.Op | ast.Call):
        return ast.Chain(stages=(value,), span=value.span)
    return value


def _number(text: str) -> int | float:
    return int(text) if re.fullmatch(r"\d+", text) else float(text)


@v_args(meta=True)
class _Builder(Transformer[Token, ast.Module]):
    """Builds AST nodes; never raises (checks belong to later passes)."""

    def __init__(self, file: str, comments: tuple[ast.Comment, ...] = ()) -> None:
        super().__init__()
        self.file = file
        self.comments = comments

    def _s(self, meta: Any) -> Span:
        return _span(self.file, meta)

    def _value(self, child: Any) -> Any:
        if isinstance(child, Token):
            span = tok_span(self.file, child)
            if child.type == "SIZE":
                return ast.Size(dims=tuple(int(d) for d in child.split("x")), span=span)
            if child.type == "QUANTITY":
                m = re.fullmatch(r"([\d.]+)(deg|px|%)", str(child))
                assert m is not None
                return ast.Quantity(value=float(m[1]), unit=m[2], span=span)
        return child

    # -- top level
    def start(self, meta: Any, items: list[Any]) -> ast.Module:
        return ast.Module(
            file=self.file, items=tuple(items), comments=self.comments, span=self._s(meta)
        )

    def use(self, meta: Any, c: list[Token]) -> ast.Use:
        return ast.Use(path=str(c[0])[1:-1], span=self._s(meta))

    def const(self, meta: Any, c: list[Any]) -> ast.Const:
        return ast.Const(name=str(c[0]), value=self._value(c[1]), span=self._s(meta))

    def table(self, meta: Any, c: list[Any]) -> ast.Table:
        return ast.Table(name=str(c[0]), matrix=c[1], span=self._s(meta))

    def kernel(self, meta: Any, c: list[Any]) -> ast.Kernel:
        divisor = None
        if c[2] is not None:  # a zero divisor is left for `define` to refuse
            divisor = ast.Num(value=_number(c[2]), span=tok_span(self.file, c[2]))
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
        return ast.Param(name=str(c[0]), default=_staged(default), span=self._s(meta))

    def body(self, meta: Any, c: list[Any]) -> tuple[Any, ...]:
        return tuple(c)

    def chain_stmt(self, meta: Any, c: list[ast.Chain]) -> ast.ChainStmt:
        return ast.ChainStmt(chain=c[0], span=self._s(meta))

    def assign(self, meta: Any, c: list[Any]) -> ast.Assign | ast.Unpack:
        *names, chain = c
        if len(names) == 1:
            return ast.Assign(target=str(names[0]), chain=chain, span=self._s(meta))
        targets = tuple(ast.Name(name=str(t), span=tok_span(self.file, t)) for t in names)
        return ast.Unpack(targets=targets, chain=chain, span=self._s(meta))

    def shared(self, meta: Any, c: list[Any]) -> ast.Shared:
        body = c[1]
        if isinstance(body, ast.Chain):
            body = (ast.ChainStmt(chain=body, span=body.span),)
        return ast.Shared(name=str(c[0]), body=body, span=self._s(meta))

    def output(self, meta: Any, c: list[tuple[Token, Token | None]]) -> ast.Output:
        names = tuple(ast.Name(name=str(t), span=tok_span(self.file, t)) for t, _ in c)
        kinds = tuple(
            ast.Name(name=str(k), span=tok_span(self.file, k)) if k is not None else None
            for _, k in c
        )
        return ast.Output(names=names, kinds=kinds, span=self._s(meta))

    def oname(self, meta: Any, c: list[Token | None]) -> tuple[Token, Token | None]:
        return (c[0], c[1])  # type: ignore[return-value]

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
            name_span=tok_span(self.file, name_tok),
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
            name_span=tok_span(self.file, name_tok, trim=1),
            args=args,
            alias=alias,
            span=self._s(meta),
        )

    def group(self, meta: Any, c: list[Any]) -> ast.Group:
        rest, alias = self._split_alias(c)
        return ast.Group(
            name=str(rest[0]),
            name_span=tok_span(self.file, rest[0]),
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

    carg = sarg = arg

    def argchain(self, meta: Any, c: list[Any]) -> ast.Chain:
        return ast.Chain(stages=tuple(c), span=self._s(meta))

    def ref(self, meta: Any, c: list[Token]) -> ast.Op:
        return ast.Op(name=str(c[0]), name_span=tok_span(self.file, c[0]), span=self._s(meta))

    def kwarg(self, meta: Any, c: list[Any]) -> ast.Arg:
        return ast.Arg(name=str(c[0]), value=_staged(self._value(c[1])), span=self._s(meta))

    def kwlist(self, meta: Any, c: list[Any]) -> ast.Arg:
        """`mean=0.49,0.48,0.45` in a train setting: one value per channel, as a list."""
        items = tuple(self._value(x) for x in c[1:])
        first, last = items[0].span, items[-1].span
        span = Span(first.file, first.line, first.col, last.end_line, last.end_col)
        return ast.Arg(
            name=str(c[0]), value=ast.ListValue(items=items, span=span), span=self._s(meta)
        )

    def callargs(self, meta: Any, c: list[ast.Arg]) -> tuple[ast.Arg, ...]:
        return tuple(c)

    def vrange(self, meta: Any, c: list[Any]) -> ast.Range:
        low, high = (self._value(x) for x in c)
        return ast.Range(low=low, high=high, span=self._s(meta))

    def size(self, meta: Any, c: list[Any]) -> ast.Size:
        """`(B*5 + C)x7x7`: whole numbers as they are (`-1` too), the rest as expressions."""
        dims: list[int | ast.Expr] = []
        sign = 1
        for child in c:
            if isinstance(child, Token) and child.type == "NEG":
                sign = -1
            elif isinstance(child, Token):
                value = sign * _number(child)
                span = tok_span(self.file, child)
                dims.append(value if isinstance(value, int) else ast.Num(value=value, span=span))
                sign = 1
            else:
                dims.append(child)
        return ast.Size(dims=tuple(dims), span=self._s(meta))

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

    def attr(self, meta: Any, c: list[Token]) -> ast.Attr:
        return ast.Attr(of=str(c[0]), attr=str(c[1]), span=self._s(meta))

    # -- training
    def train(self, meta: Any, c: list[Any]) -> ast.Train:
        settings = [s for s in c[2] if isinstance(s, ast.Op)]
        augment = next((s for s in c[2] if isinstance(s, _Augment)), ())
        return ast.Train(
            network=str(c[0]),
            dataset=str(c[1]),
            dataset_span=tok_span(self.file, c[1]),
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


def parse(text: str, file: str = "<string>", limits: Limits | None = None) -> ast.Module:
    """Parse one file's text, its comments kept; raise SpecError with a located diagnostic
    on a syntax error, a number too large to be meant, or a file over the token or nesting
    limit."""
    limits = limits or Limits()
    check_lexemes(text, file, limits.max_tokens)
    # The parser makes many small objects that all live until the end: pausing the cyclic
    # collector keeps long specs linear (a 10,000-line chain parses twice as fast).
    collecting = gc.isenabled()
    gc.disable()
    try:
        with comments_kept() as kept:
            tree = lark_parser().parse(text)
        check_nesting(tree, file, limits.max_nesting)
        return _Builder(file, _comments(kept, file)).transform(tree)
    except UnexpectedInput as e:
        raise SpecError([syntax_diagnostic(e, text, file)]) from None
    finally:
        if collecting:
            gc.enable()


__all__ = ["KEYWORDS", "grammar_text", "lark_parser", "parse", "syntax_diagnostic"]
