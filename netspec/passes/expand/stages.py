"""Stages given to a block as arguments: `block bneck(c, act=relu) { conv c 1x1 | act }`.

A block's parameter may name an operation or a block, which the body then uses as a
stage: `bneck(16, act=hardswish)`, `bneck(16, act=leaky_relu 0.2)` (or `leaky_relu(0.2)`),
`stage(unit=basic)`. Only what the spec can name may be given: a registered operation or
a block; never anything of Python's. A bare name arrives as the
evaluator's `Word`; a stage written with its arguments as a `StageArg`, whose arguments are
read where they were written (the caller's names), not in the block's body.

Where the body writes the parameter as a stage, `bound_stage` gives the stage it stands
for. A parameter that shares its name with an operation (`pad=same`, then `pad 1`) is that
operation unless its value names a stage too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from netspec.diagnostics import spec_error
from netspec.ops import REGISTRY
from netspec.passes.values import Evaluator, Word
from netspec.syntax import ast


@dataclass(frozen=True)
class StageArg:
    """`act=leaky_relu 0.2`: an operation or block call given with its arguments, which are
    evaluated against `values`, the names where it was written."""

    stage: ast.Op | ast.Call
    values: Mapping[str, Any]

    def __repr__(self) -> str:
        return f"the operation '{self.stage.name}' given as a stage"


def argument(value: ast.Value | ast.Chain, values: Mapping[str, Any]) -> Any:
    """A block's argument, evaluated against `values`: a stage written with its arguments
    (a one-stage chain, as the parser keeps it) is kept as a `StageArg`; a longer chain is
    refused by the evaluator (E228)."""
    if isinstance(value, ast.Chain) and len(value.stages) == 1:
        stage = value.stages[0]
        if isinstance(stage, ast.Op | ast.Call) and stage.alias is None:
            return StageArg(stage, values)
    _refuse_negative_argument(value, values)
    return Evaluator(values).value(value)


def _refuse_negative_argument(value: ast.Value | ast.Chain, values: Mapping[str, Any]) -> None:
    """`act=scale -1` reads as a subtraction from an unknown name: say how to write it."""
    if not (isinstance(value, ast.BinOp) and value.op == "-"):
        return
    left = value.left
    if isinstance(left, ast.Name) and left.name not in values and left.name in REGISTRY:
        raise spec_error(
            "E242",
            f"'{left.name} -...' reads as a subtraction from '{left.name}', not as "
            f"'{left.name}' with a negative argument",
            value.span,
            hint=f"give its arguments in parentheses: {left.name}(-...)",
        )


def bound_stage(
    stage: ast.Op | ast.Call, values: Mapping[str, Any], known: Callable[[str], bool]
) -> tuple[ast.Op | ast.Call, Mapping[str, Any]] | None:
    """The stage that `stage` stands for where its name is a parameter (or constant) whose
    value names one, and the values its arguments are read against; None where it does not.

    `known` says whether a stage may name a name (an operation, a block, split or chunk).
    """
    value = values.get(stage.name)
    if isinstance(value, StageArg):
        if stage.args:
            raise spec_error(
                "E242",
                f"'{stage.name}' was given with its arguments ({_written(value.stage)}): "
                "it takes no more here",
                stage.args[0].span,
                hint=f"give every argument where the block is called, or give '{stage.name}' "
                f"as the bare name ({value.stage.name}) and its arguments here",
            )
        update: dict[str, Any] = {"span": stage.span, "alias": stage.alias}
        return value.stage.model_copy(update=update), value.values
    if not isinstance(value, Word) or value == stage.name:
        return None
    if known(value) or not known(stage.name):
        return stage.model_copy(update={"name": str(value), "name_span": value.span}), values
    return None


def _written(stage: ast.Op | ast.Call) -> str:
    """How a stage given with arguments is shown in a message: its name and the count."""
    n = len(stage.args)
    return f"{stage.name} with {n} argument{'' if n == 1 else 's'}"
