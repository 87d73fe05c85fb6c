"""Evaluating argument values: integer arithmetic on names, sizes, tables, kernels.

>>> from netspec.syntax.parser import parse
>>> const = parse("const w = (64 + 32) // 2 * 3").items[0]
>>> Evaluator({}).value(const.value)
144
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from netspec.diagnostics import Diagnostic, Span, SpecError, did_you_mean
from netspec.syntax import ast

WORDS = {"true": True, "false": False}


class Word(str):
    """A bare name with no value bound to it: a keyword argument such as `same`, or a typo."""

    span: Span

    def __new__(cls, text: str, span: Span) -> Word:
        word = super().__new__(cls, text)
        word.span = span
        return word


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

    def value(self, node: ast.Value) -> Any:
        if isinstance(node, ast.Num):
            return node.value
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
            return node.dims
        if isinstance(node, ast.Quantity):
            return Quantity(node.value, node.unit)
        if isinstance(node, ast.Matrix):
            return node.rows
        if isinstance(node, ast.ListValue):
            return tuple(self.value(item) for item in node.items)
        assert isinstance(node, ast.Range)
        return Interval(self.value(node.low), self.value(node.high))


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
    return repr(value)
