"""Block calls: refusing recursion and deep nesting, and binding the call's arguments
to the block's parameters (positional first, then by name, then defaults)."""

from __future__ import annotations

from typing import Any

from netspec.diagnostics import Diagnostic, SpecError, did_you_mean, spec_error
from netspec.limits import Limits
from netspec.passes.arguments import plural
from netspec.passes.expand.scope import Scope
from netspec.passes.expand.stages import argument
from netspec.syntax import ast


def check_call(block: ast.Block, stage: ast.Op | ast.Call, scope: Scope, limits: Limits) -> None:
    """A block may not call itself, nor nest deeper than `max_depth` (E207, E402)."""
    if block.name in scope.stack:
        raise spec_error(
            "E207",
            f"block '{block.name}' calls itself",
            stage.span,
            hint="blocks cannot be recursive; use repeat",
        )
    if len(scope.stack) >= limits.max_depth:
        raise spec_error(
            "E402",
            f"blocks nest deeper than the limit of {limits.max_depth}",
            stage.span,
            hint="raise it with --max-depth",
        )


def _given(block: ast.Block, stage: ast.Op | ast.Call, scope: Scope) -> dict[str, Any]:
    """The arguments of the call, by parameter name, evaluated in the caller's scope."""
    params = {p.name: p for p in block.params}
    positional = [a for a in stage.args if a.name is None]
    if len(positional) > len(block.params):
        raise SpecError(
            [
                Diagnostic(
                    "E213",
                    f"block '{block.name}' takes {plural(len(block.params), 'argument')}, "
                    f"got {len(positional)}",
                    positional[len(block.params)].span,
                ).with_note("the block is defined here", block.span)
            ]
        )
    given = {
        p.name: argument(arg.value, scope.values)
        for p, arg in zip(block.params, positional, strict=False)
    }
    for arg in stage.args:
        if arg.name is None:
            continue
        if arg.name not in params:
            raise spec_error(
                "E221",
                f"block '{block.name}' has no parameter '{arg.name}'",
                arg.span,
                hint=did_you_mean(arg.name, params),
            )
        if arg.name in given:
            raise spec_error("E214", f"'{arg.name}' is given twice", arg.span)
        given[arg.name] = argument(arg.value, scope.values)
    return given


def bind_arguments(
    block: ast.Block, stage: ast.Op | ast.Call, scope: Scope, globals_: dict[str, Any]
) -> dict[str, Any]:
    """The names a call's body sees: the spec's constants, then the block's parameters."""
    given = _given(block, stage, scope)
    values = dict(globals_)
    for p in block.params:
        if p.name in given:
            values[p.name] = given[p.name]
        elif p.default is not None:
            values[p.name] = argument(p.default, values)
        else:
            names = ", ".join(q.name for q in block.params)
            raise SpecError(
                [
                    Diagnostic(
                        "E222",
                        f"block '{block.name}' needs a value for '{p.name}'",
                        stage.span,
                        hint=f"call it as {block.name}({names})",
                    ).with_note(f"'{p.name}' has no default", p.span)
                ]
            )
    return values
