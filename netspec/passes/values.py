"""Evaluating argument values: integer arithmetic on names, sizes, tables, kernels.

>>> from netspec.syntax.parser import parse
>>> const = parse("const w = (64 + 32) // 2 * 3").items[0]
>>> Evaluator({}).value(const.value)
144
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netspec.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from netspec.syntax import ast
from netspec.text import fmt_shape

WORDS = {"true": True, "false": False}


class Word(str):
    """A bare name with no value bound to it: a keyword argument such as `same`, or a typo."""

    span: Span

    def __new__(cls, text: str, span: Span) -> Word:
        word = super().__new__(cls, text)
        word.span = span
        return word


# The sizes `in.c`, `in.h`, `in.w` read: the axis of a per-sample shape (C, H, W).
AXES = {"c": 0, "h": 1, "w": 2}


class InputSizes:
    """What `in` stands for in a body's values: the tensor the body reads, whose sizes
    `in.c`, `in.h` and `in.w` are found only when asked for (the shape of every layer
    emitted so far, by the shape rules `infer` uses)."""

    def __init__(self, shape: Callable[[], tuple[int | str, ...]]) -> None:
        self._shape = shape

    def size(self, node: ast.Attr) -> int:
        """The size `node` names (`in.c`), or a located error saying why there is none."""
        axis = AXES.get(node.attr)
        if axis is None:
            raise _error(
                "E229",
                f"'{node.of}' has no size '{node.attr}'",
                node.span,
                hint=f"a tensor's sizes are {node.of}.c (channels), {node.of}.h and {node.of}.w",
            )
        shape = self._shape()
        if axis >= len(shape):
            raise _error(
                "E229",
                f"{node.of}.{node.attr}: the input is {fmt_shape(shape)}, which has no "
                f"axis {node.attr}",
                node.span,
            )
        dim = shape[axis]
        if isinstance(dim, str):
            raise _error(
                "E229",
                f"{node.of}.{node.attr} is the symbolic size '{dim}' here, not a number",
                node.span,
                hint=f"set it with --set {dim}=VALUE, or fix the input's size"
                if dim.isidentifier()
                else "fix the input's size, e.g. 1x28x28",
            )
        return dim


def _error(code: str, message: str, span: Span, hint: str | None = None) -> SpecError:
    return SpecError([Diagnostic(code, message, span, hint=hint)])


@dataclass(frozen=True)
class Quantity:
    value: float
    unit: str


@dataclass(frozen=True)
class Interval:
    low: Any
    high: Any


# Arithmetic stays far from sizes no machine has, so that no later rule (and no message
# that prints the value) meets a number with thousands of digits.
MAX_MAGNITUDE = 10**18


def _bounded(value: int | float, span: Span) -> int | float:
    finite = isinstance(value, int) or math.isfinite(value)
    if not finite or abs(value) > MAX_MAGNITUDE:
        raise SpecError(
            [Diagnostic("E208", "this value is too large (over 10^18 in magnitude)", span)]
        )
    return value


def _arith(op: str, a: Any, b: Any, span: Span) -> Any:
    return _bounded(_raw_arith(op, a, b, span), span)


def _raw_arith(op: str, a: Any, b: Any, span: Span) -> Any:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise SpecError([Diagnostic("E204", "division by zero", span)])
    if op == "//":
        return a // b
    if op == "%":
        return a % b
    return a / b


class Evaluator:
    """Evaluates values against a mapping of bound names (constants, block arguments)."""

    def __init__(self, names: Mapping[str, Any]) -> None:
        self.names = names

    def _number(self, node: ast.Value) -> int | float:
        value = self.value(node)
        if isinstance(value, Word):
            hint = did_you_mean(value, self.names)
            raise SpecError([Diagnostic("E201", f"unknown name '{value}'", node.span, hint=hint)])
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SpecError(
                [Diagnostic("E205", f"arithmetic needs numbers, got {describe(value)}", node.span)]
            )
        return value

    def value(self, node: ast.Value | ast.Chain) -> Any:
        if isinstance(node, ast.Num):
            return node.value
        if isinstance(node, ast.Attr):
            return self._attr(node)
        if isinstance(node, ast.Chain):
            raise _error(
                "E228",
                "a chain is not a value",
                node.span,
                hint="only a merge takes a chain as an argument, e.g. add(body, project(c, 2))",
            )
        if isinstance(node, ast.Name):
            if node.name in self.names:
                return self.names[node.name]
            if node.name in WORDS:
                return WORDS[node.name]
            return Word(node.name, node.span)
        if isinstance(node, ast.BinOp):
            a, b = self._number(node.left), self._number(node.right)
            return _arith(node.op, a, b, node.span)
        if isinstance(node, ast.Neg):
            return -self._number(node.operand)
        if isinstance(node, ast.Size):
            return tuple(d if isinstance(d, int) else self._dim(d) for d in node.dims)
        if isinstance(node, ast.Quantity):
            return Quantity(node.value, node.unit)
        if isinstance(node, ast.Matrix):
            return node.rows
        if isinstance(node, ast.ListValue):
            return tuple(self.value(item) for item in node.items)
        assert isinstance(node, ast.Range)
        return Interval(self.value(node.low), self.value(node.high))

    def _dim(self, node: ast.Expr) -> int:
        """One computed part of a size (`(c*2)x7`): a whole number."""
        value = self._number(node)
        if isinstance(value, float):
            hint = "'/' gives a fraction; use '//' for whole-number division"
            raise _error("E205", f"a size needs whole numbers, got {value:g}", node.span, hint)
        return value

    def _attr(self, node: ast.Attr) -> int:
        owner = self.names.get(node.of)
        if isinstance(owner, InputSizes):
            return owner.size(node)
        if node.of == "in":
            raise _error(
                "E229",
                f"in.{node.attr}: this network has several inputs, so 'in' names none of them",
                node.span,
                hint="'in' is the input of a block, or of a network with one input",
            )
        raise _error(
            "E229",
            f"'{node.of}.{node.attr}': only the input 'in' has sizes to read",
            node.span,
            hint="in.c is the channels of the tensor the block reads; in.h and in.w its size",
        )


def describe(value: Any) -> str:
    if isinstance(value, Word):
        return f"the name '{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple) and value and all(isinstance(v, int) for v in value):
        return "a size " + "x".join(str(v) for v in value)
    if isinstance(value, tuple):
        return "a list or matrix"
    if isinstance(value, Quantity):
        return f"{value.value:g}{value.unit}"
    if isinstance(value, Interval):
        return "a range"
    if isinstance(value, InputSizes):
        return "the input 'in' (its channels are in.c)"
    return repr(value)
