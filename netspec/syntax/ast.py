"""The abstract syntax tree: frozen Pydantic models, each with the Span it came from.

The tree says what was written, nothing more: names are not yet resolved and
arithmetic is not yet evaluated. Spans are left out of equality.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from netspec.diagnostics import UNKNOWN, Span


class Node(BaseModel):
    """Base of every AST node. Equality and hashing leave out every Span field, so that
    the same text parsed from two places compares equal.

    >>> Num(value=1, span=Span("a.net", 1, 1, 1, 2)) == Num(value=1)
    True
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)
    span: Span = Field(default=UNKNOWN, repr=False)

    def _compared(self) -> tuple[object, ...]:
        return tuple(
            (name, getattr(self, name))
            for name in type(self).model_fields
            if name not in _SPAN_FIELDS
        )

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Node)
        return self._compared() == other._compared()

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._compared()))


_SPAN_FIELDS = frozenset({"span", "name_span", "dataset_span"})


# ---- values -----------------------------------------------------------------


class Num(Node):
    value: int | float


class Name(Node):
    name: str


class Attr(Node):
    """`in.c`: a size of a tensor (its channels `c`, height `h` or width `w`), known once
    the block that reads it is expanded."""

    of: str
    attr: str


class BinOp(Node):
    op: Literal["+", "-", "*", "//", "/", "%"]
    left: Expr
    right: Expr


class Neg(Node):
    operand: Expr


class Size(Node):
    """`5x5`, `1x7`: a kernel or window size, one number per spatial axis. A computed size
    (`(c*2)x7x7`, `3x(k)`) keeps each part in parentheses as an expression."""

    dims: tuple[int | Expr, ...]


class Quantity(Node):
    """`15deg`, `2px`, `10%`."""

    value: float
    unit: Literal["deg", "px", "%"]


class Matrix(Node):
    rows: tuple[tuple[float, ...], ...]


class ListValue(Node):
    items: tuple[Value, ...]


class Range(Node):
    low: Value
    high: Value


Expr = Num | Name | Attr | BinOp | Neg
Value = Num | Name | Attr | BinOp | Neg | Size | Quantity | Matrix | ListValue | Range


class Arg(Node):
    """A positional (`name` is None) or keyword argument. A merge's argument may be a
    chain (`add(body, project(c, stride))`); a block's may be a stage, an operation or
    block to use in its body (`act=leaky_relu 0.2`, `unit=basic(64)`), kept as a chain of
    that one stage; nothing else takes one."""

    name: str | None = None
    value: Value | Chain


# ---- stages and statements ----------------------------------------------------


class Op(Node):
    """`conv 6 5x5 stride=2 as c1`: an operation (or a reference) written with spaces."""

    name: str
    name_span: Span = Field(default=UNKNOWN, repr=False)
    args: tuple[Arg, ...] = ()
    alias: str | None = None


class Call(Node):
    """`basic(128, stride=2)`, `add(a, b)`, `tower(left)`: a block, merge or shared call."""

    name: str
    name_span: Span = Field(default=UNKNOWN, repr=False)
    args: tuple[Arg, ...] = ()
    alias: str | None = None


class Group(Node):
    """`concat { ... }`: branches that all read the same input, then merged."""

    name: str
    name_span: Span = Field(default=UNKNOWN, repr=False)
    branches: tuple[Chain, ...]
    alias: str | None = None


class Repeat(Node):
    count: Expr
    stage: Stage


Stage = Op | Call | Group | Repeat


class Chain(Node):
    stages: tuple[Stage, ...]


class ChainStmt(Node):
    chain: Chain


class Assign(Node):
    target: str
    chain: Chain


class Unpack(Node):
    """`a, b = split 58`, `x1, x2 = unit(c)`: the chain's last stage gives several tensors,
    one for each name (the stages before it give one, as in any chain)."""

    targets: tuple[Name, ...]
    chain: Chain


class Shared(Node):
    """`shared tower = {...}`: one instance, applied wherever it is called."""

    name: str
    body: tuple[Statement, ...]


# The kinds an `output` may declare (`output code: embedding`); undeclared, netspec infers one.
OUTPUT_KINDS = ("scores", "map", "embedding", "tensor")


class Output(Node):
    names: tuple[Name, ...]
    kinds: tuple[Name | None, ...] = ()  # one per name: the declared kind, if any


Statement = ChainStmt | Assign | Unpack | Shared | Output


# ---- top level ------------------------------------------------------------------


class Param(Node):
    """A block's parameter; its default may be a stage, as an argument may (`act=relu`)."""

    name: str
    default: Value | Chain | None = None


class Block(Node):
    name: str
    params: tuple[Param, ...]
    body: tuple[Statement, ...]


class Input(Node):
    name: str
    shape: tuple[int | str, ...]


class Network(Node):
    name: str
    inputs: tuple[Input, ...]
    body: tuple[Statement, ...]


class Const(Node):
    name: str
    value: Value


class Table(Node):
    name: str
    matrix: Matrix


class Kernel(Node):
    """`kernel box = [1 1; 1 1] / 4`: the entries as written, and the divisor if any."""

    name: str
    matrix: Matrix
    divisor: Num | None = None


class Use(Node):
    path: str


class Train(Node):
    network: str
    dataset: str
    dataset_span: Span = Field(default=UNKNOWN, repr=False)
    settings: tuple[Op, ...]
    augment: tuple[Op, ...] = ()


Item = Use | Const | Table | Kernel | Block | Network | Train


class Comment(Node):
    """`# ...` as written (the `#` included, a line end's `\\r` not), where it is: the
    parser keeps every comment for tools that rewrite or annotate a spec (netspec fmt)."""

    text: str


class Module(Node):
    """One parsed file, with its comments in the order they appear."""

    file: str
    items: tuple[Item, ...]
    comments: tuple[Comment, ...] = ()


_RECURSIVE = (BinOp, Neg, Size, ListValue, Range, Arg, Group, Repeat, Chain, Unpack, Shared, Param)
for _model in (*_RECURSIVE, Module):
    _model.model_rebuild()
