"""Arguments of an operation: evaluated, mapped to parameter names, validated by the
operation's Pydantic model, and every mistake reported at the argument that made it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from netspec.diagnostics import (
    Collector,
    Diagnostic,
    Span,
    SpecError,
    did_you_mean,
    literal_options,
    requirement,
    spec_error,
)
from netspec.ir import OpParams
from netspec.limits import MAX_VALUE
from netspec.ops import OpDef
from netspec.passes.hints import (
    extra_positional,
    missing,
    renamed,
    unknown_name,
    unknown_parameter,
    value_hint,
)
from netspec.passes.values import Evaluator, Word, describe
from netspec.syntax import ast


def op_arguments(
    opdef: OpDef, stage: ast.Op | ast.Call, values: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Span]]:
    """Evaluate an operation's arguments and map positional ones to parameter names."""
    ev = Evaluator(values)
    kwargs: dict[str, Any] = {}
    spans: dict[str, Span] = {}
    positional = [a for a in stage.args if a.name is None]
    if opdef.variadic and len(positional) >= len(opdef.positional) > 0:
        *head, rest = opdef.positional
        for key, arg in zip(head, positional, strict=False):
            kwargs[key], spans[key] = ev.value(arg.value), arg.span
        tail = positional[len(head) :]
        kwargs[rest], spans[rest] = tuple(ev.value(a.value) for a in tail), tail[0].span
        positional = []
    if len(positional) > len(opdef.positional):
        names = ", ".join(opdef.positional) or "none"
        raise spec_error(
            "E213",
            f"'{opdef.name}' takes "
            f"{plural(len(opdef.positional), 'positional argument')} ({names}), "
            f"got {len(positional)}",
            positional[len(opdef.positional)].span,
            hint=extra_positional(opdef, positional),
        )
    for key, arg in zip(opdef.positional, positional, strict=False):
        kwargs[key], spans[key] = ev.value(arg.value), arg.span
    for arg in stage.args:
        if arg.name is None:
            continue
        if arg.name in kwargs:
            raise SpecError(
                [
                    Diagnostic("E214", f"'{arg.name}' is given twice", arg.span).with_note(
                        "first given here", spans[arg.name]
                    )
                ]
            )
        kwargs[arg.name], spans[arg.name] = ev.value(arg.value), arg.span
    return kwargs, spans


def validate(
    opdef: OpDef,
    kwargs: dict[str, Any],
    spans: Mapping[str, Span],
    stage: ast.Op | ast.Call,
    names: Mapping[str, Any],
) -> OpParams:
    """Validate arguments with the operation's Pydantic model; one diagnostic per parameter."""
    _refuse_huge(opdef, kwargs, spans, stage)
    try:
        return opdef.params.model_validate(kwargs)
    except ValidationError as e:
        by_key: dict[str | None, list[Any]] = {}
        for err in e.errors():
            loc = err.get("loc") or ()
            by_key.setdefault(str(loc[0]) if loc else None, []).append(err)
        errors = Collector()
        meant = renamed(opdef, kwargs)  # `scale_factor=2`: one error, not two
        for key, errs in by_key.items():
            if key in meant and all(err["type"] == "missing" for err in errs):
                continue
            where = _ParamSite(opdef, stage, kwargs, spans)
            errors.add(_param_diagnostic(where, key, errs, names))
        raise SpecError(errors.items) from None


def _huge(value: Any) -> int | float | None:
    """The first number in a value (itself, or inside a size or list) over MAX_VALUE."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value if not abs(value) <= MAX_VALUE else None
    if isinstance(value, tuple):
        return next((h for h in map(_huge, value) if h is not None), None)
    return None


def _number(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def _refuse_huge(
    opdef: OpDef, kwargs: Mapping[str, Any], spans: Mapping[str, Span], stage: ast.Op | ast.Call
) -> None:
    """Sizes, strides, pads and counts fit in 32 bits, as PyTorch and ONNX take them."""
    errors = Collector()
    for key, value in kwargs.items():
        huge = _huge(value)
        if huge is not None:
            errors.error(
                "E226",
                f"'{opdef.name}' {key} must be at most {MAX_VALUE:,}, got {_number(huge)}",
                spans.get(key, stage.span),
            )
    errors.raise_if_any()


@dataclass(frozen=True)
class _ParamSite:
    """Where an operation's arguments were written, for reporting a bad one."""

    opdef: OpDef
    stage: ast.Op | ast.Call
    kwargs: Mapping[str, Any]
    spans: Mapping[str, Span]

    def written(self, key: str) -> ast.Value | ast.Chain | None:
        """The argument as written for parameter `key` (positional or by name)."""
        positional = [a for a in self.stage.args if a.name is None]
        for name, arg in zip(self.opdef.positional, positional, strict=False):
            if name == key:
                return arg.value
        return next((a.value for a in self.stage.args if a.name == key), None)


# Parameters whose value is a definition, named so an unknown name says what it should be.
_NEEDS = {"connect": "a connection table", "fixed": "a list of kernels"}


def plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _word_in(value: Any) -> Word | None:
    """The first bare, unbound name in a value (itself, or inside a list)."""
    if isinstance(value, Word):
        return value
    if isinstance(value, tuple):
        return next((w for w in map(_word_in, value) if w is not None), None)
    return None


def _divides(value: ast.Value | ast.Chain | None) -> bool:
    if isinstance(value, ast.BinOp):
        return value.op == "/" or _divides(value.left) or _divides(value.right)
    return isinstance(value, ast.Neg) and _divides(value.operand)


def _param_diagnostic(
    site: _ParamSite, key: str | None, errs: list[Any], names: Mapping[str, Any]
) -> Diagnostic:
    """One diagnostic for every Pydantic error about one parameter (a union gives several)."""
    op, stage = site.opdef.name, site.stage
    span = site.spans.get(key, stage.span) if key else stage.span
    if key is None:  # a rule over several parameters: its hint follows a newline
        message, _, advice = str(errs[0]["msg"]).removeprefix("Value error, ").partition("\n")
        return Diagnostic("E226", message, span, hint=advice or None)
    if errs[0]["type"] == "extra_forbidden":
        return Diagnostic(
            "E225",
            f"'{op}' has no parameter '{key}'",
            span,
            hint=unknown_parameter(site.opdef, key, site.written(key) or ast.Name(name=key)),
        )
    if all(err["type"] == "missing" for err in errs):
        message, fix = missing(site.opdef, key)
        return Diagnostic("E226", message, span, hint=fix)
    given = site.kwargs.get(key)
    options = literal_options(errs)
    word = _word_in(given)
    if word is not None and not (options and word is given):
        need = f": {key}= needs {_NEEDS[key]}" if key in _NEEDS else ""
        near = did_you_mean(word, names) or unknown_name(word, key)
        return Diagnostic("E201", f"unknown name '{word}'{need}", word.span, hint=near)
    wants = _NEEDS.get(key) or requirement(errs)
    hint = did_you_mean(str(given), [*options, *names]) if word is not None else None
    hint = hint or value_hint(site.opdef, stage, site.kwargs, key, errs)
    if hint is None and options and all(e["type"] == "literal_error" for e in errs):
        hint = "write " + " or ".join(f"{key}={option}" for option in options)
    if isinstance(given, float) and _divides(site.written(key)):
        hint = "'/' gives a fraction; use '//' for whole-number division"
    return Diagnostic(
        "E226", f"'{op}' {key} must be {wants}, got {describe(given)}", span, hint=hint
    )
