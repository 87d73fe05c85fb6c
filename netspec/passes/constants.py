"""constants: the value of every table, kernel and constant, with `--set` values applied.

Constants are evaluated in the order they are defined, so one may use those
before it; a `--set` value replaces the constant's own expression.

>>> from netspec.passes.state import CompileState
>>> from netspec.passes.define import Program
>>> from netspec.syntax.parser import parse
>>> program = Program(consts={c.name: c for c in parse("const a = 8\\nconst b = a * 2").items})
>>> state = CompileState("", program=program, const_overrides={"a": 3})
>>> constants(state)
>>> state.values
{'a': 3, 'b': 6}
"""

from __future__ import annotations

from typing import Any

from netspec.passes.state import CompileState, Pass, need
from netspec.passes.values import Evaluator
from netspec.syntax import ast


def kernel_rows(kernel: ast.Kernel) -> tuple[tuple[float, ...], ...]:
    """A kernel's entries, divided by its divisor (`/ 9`) when it has one."""
    rows = kernel.matrix.rows
    if kernel.divisor is None or kernel.divisor.value == 0:
        return rows
    divisor = kernel.divisor.value
    return tuple(tuple(v / divisor for v in row) for row in rows)


def constants(state: CompileState) -> None:
    program, overrides = need(state.program), need(state.const_overrides)
    values: dict[str, Any] = {}
    for name, table in program.tables.items():
        values[name] = tuple(tuple(int(v) for v in row) for row in table.matrix.rows)
    for name, kernel in program.kernels.items():
        values[name] = kernel_rows(kernel)
    for name, const in program.consts.items():
        if name in overrides:
            values[name] = overrides[name]
        else:
            values[name] = Evaluator(values).value(const.value)
    state.values = values


CONSTANTS = Pass("constants", constants, needs=("program", "const_overrides"), ensures=("values",))
