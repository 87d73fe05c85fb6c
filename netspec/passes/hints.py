"""Hints for mistakes in an operation's arguments, worked out from what was written and
from the operation's parameter model, never from a list of known cases.

`conv 16 3x3 stride 2` gets "write stride=2", `conv 3x3 16` gets the two swapped,
`conv 3 16 3x3` is PyTorch's (in, out, kernel), `avgpool global=true` names the value
`global`, `dense 10 activation=relu` puts the activation in a stage of its own.

>>> from netspec.ops import REGISTRY
>>> from netspec.syntax.parser import parse
>>> def args(text):
...     net = parse("network n(x: 3x8x8) {\\n    " + text + "\\n}").items[0]
...     stage = net.body[0].chain.stages[0]
...     return stage, [a for a in stage.args if a.name is None]
>>> stage, positional = args("conv 16 3x3 stride 2")
>>> extra_positional(REGISTRY["conv"], positional)
'write stride=2'
>>> extra_positional(REGISTRY["dense"], args("dense 3072 10")[1])
"netspec reads the input's size from the stage before: write 'dense 10'"
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args, get_origin

from pydantic import BaseModel, ValidationError

from netspec.diagnostics import did_you_mean, literal_options
from netspec.ops import REGISTRY, OpDef
from netspec.ops.synonyms import SETTINGS, VALUES, param_hint, param_meant
from netspec.syntax import ast

# Positional parameters that count what a stage makes, whose input-side twin netspec infers:
# `conv 3 16 3x3` (PyTorch's in, out) and `dense 3072 10` give it anyway.
_COUNTS = {"channels": "channels", "units": "size"}


def written(value: ast.Value | ast.Chain) -> str | None:
    """A simple value as it was written (`16`, `3x3`, `c*2`, `in.c`), None for others."""
    if isinstance(value, ast.Num):
        return f"{value.value:g}" if isinstance(value.value, float) else str(value.value)
    if isinstance(value, ast.Name):
        return value.name
    if isinstance(value, ast.Attr):
        return f"{value.of}.{value.attr}"
    if isinstance(value, ast.Neg):
        inner = written(value.operand)
        return None if inner is None else f"-{inner}"
    if isinstance(value, ast.BinOp):
        left, right = written(value.left), written(value.right)
        return None if left is None or right is None else f"{left}{value.op}{right}"
    if isinstance(value, ast.Size):
        parts = [str(d) if isinstance(d, int) else _parenthesized(written(d)) for d in value.dims]
        return None if None in parts else "x".join(p for p in parts if p is not None)
    return None


def _parenthesized(text: str | None) -> str | None:
    return None if text is None else f"({text})"


def _glued(before: ast.Arg, after: ast.Arg) -> bool:
    """`-1xhxw`: the second argument starts where the first ends, with no space."""
    a, b = before.span, after.span
    return a.end_line == b.line and a.end_col == b.col


def _size_with_names(positional: Sequence[ast.Arg], at: int) -> str | None:
    """`reshape -1xhxw` reads as -1 and the name `xhxw`: a size's parts are numbers, or
    expressions in parentheses."""
    extra = positional[at].value
    if at == 0 or not isinstance(extra, ast.Name) or not extra.name.startswith("x"):
        return None
    if not _glued(positional[at - 1], positional[at]):
        return None
    first = written(positional[at - 1].value)
    parts = [p for p in extra.name.split("x")[1:] if p]
    if first is None or not parts:
        return None
    before = positional[at - 1].value
    plain = isinstance(before, ast.Num) or (
        isinstance(before, ast.Neg) and isinstance(before.operand, ast.Num)
    )
    fixed = (first if plain else f"({first})") + "".join(
        f"x{p}" if p.isdigit() else f"x({p})" for p in parts
    )
    return (
        f"'{first}{extra.name}' reads as {first} and the name '{extra.name}': "
        f"a size's parts are numbers or expressions in parentheses, e.g. {fixed}"
    )


def _key_then_value(opdef: OpDef, positional: Sequence[ast.Arg], at: int) -> str | None:
    """`conv 16 3x3 stride 2`: a parameter's name, then its value, without the `=`."""
    extra = positional[at].value
    if not isinstance(extra, ast.Name) or extra.name not in opdef.params.model_fields:
        return None
    value = written(positional[at + 1].value) if at + 1 < len(positional) else None
    return f"write {extra.name}={value or 'VALUE'}"


def _inferred_count(opdef: OpDef, positional: Sequence[ast.Arg]) -> str | None:
    """`conv 3 16 3x3`, `dense 3072 10`: the input's count given before the output's."""
    if not opdef.positional or opdef.positional[0] not in _COUNTS:
        return None
    if len(positional) != len(opdef.positional) + 1:
        return None
    if not all(isinstance(a.value, ast.Num) for a in positional[:2]):
        return None
    rest = [r for r in (written(a.value) for a in positional[1:]) if r is not None]
    if len(rest) != len(positional) - 1:
        return None
    shown = " ".join((opdef.name, *rest))
    what = _COUNTS[opdef.positional[0]]
    return f"netspec reads the input's {what} from the stage before: write '{shown}'"


def _named_example(opdef: OpDef, value: ast.Value | ast.Chain) -> str | None:
    """`conv 16 3x3 2`: the first parameter taken by name that the extra value fits
    (`stride=2`), where the value is a literal."""
    text = written(value)
    literal: Any = None
    if isinstance(value, ast.Num | ast.Name):
        literal = value.value if isinstance(value, ast.Num) else value.name
    elif isinstance(value, ast.Size) and all(isinstance(d, int) for d in value.dims):
        literal = value.dims
    if literal is None or text is None:
        return None
    for field in opdef.params.model_fields:
        if field not in opdef.positional and _fits(opdef.params, {field: literal}, [field]):
            return f"{field}={text}"
    return None


def _cousin(name: str, value: ast.Value | ast.Chain) -> str:
    """`relu 0.1`: an operation named like this one that takes the value (`leaky_relu`)."""
    text = written(value)
    for other, opdef in REGISTRY.items():
        if other.endswith(f"_{name}") and opdef.positional and text is not None:
            return f"; '{other}' takes a {opdef.positional[0]}: '{other} {text}'"
    return ""


def extra_positional(opdef: OpDef, positional: Sequence[ast.Arg]) -> str:
    """The hint for more positional arguments than `opdef` takes."""
    at = len(opdef.positional)
    extra = positional[at].value
    if isinstance(extra, ast.Num) and f"{opdef.name}{extra.value}" in REGISTRY:
        return f"did you mean '{opdef.name}{extra.value}'?"
    fields = list(opdef.params.model_fields)
    if not fields:
        return f"'{opdef.name}' takes no arguments" + _cousin(opdef.name, extra)
    found = (
        _size_with_names(positional, at)
        or _key_then_value(opdef, positional, at)
        or _inferred_count(opdef, positional)
    )
    if found:
        return found
    named = ", ".join(f"{f}=" for f in fields if f not in opdef.positional)
    example = _named_example(opdef, positional[at].value) if opdef.positional else None
    if example is not None:
        return f"give the others by name, e.g. {example}"
    if not opdef.positional:
        return (
            f"'{opdef.name}' takes its input's size from the stage before; "
            f"its own arguments go by name: {named}"
        )
    return f"give the others by name: {named}" if named else f"'{opdef.name}' takes no more"


def _literals(annotation: Any) -> list[str]:
    """The words a parameter's type allows (`Literal['global', 'to'] | tuple[int, int]`)."""
    if get_origin(annotation) is Literal:
        return [a for a in get_args(annotation) if isinstance(a, str)]
    return [w for arg in get_args(annotation) for w in _literals(arg)]


def unknown_parameter(opdef: OpDef, key: str, value: ast.Value | ast.Chain) -> str:
    """The hint for `key=` that `opdef` does not have: netspec's name for it, an operation
    given as an argument (`activation=relu`), or a word that is a value (`global=true`)."""
    fields = opdef.params.model_fields
    if not fields:
        return f"'{opdef.name}' takes no arguments"
    hint = param_hint(key, fields)
    if hint is not None:
        return hint
    if isinstance(value, ast.Name) and value.name in REGISTRY and REGISTRY[value.name].arity == 1:
        return f"an operation is a stage of its own: '{opdef.name} ... | {value.name}'"
    for field, info in fields.items():
        if key in _literals(info.annotation):
            if field in opdef.positional:
                return f"'{key}' is a value of {field}: write '{opdef.name} {key}'"
            return f"'{key}' is a value: write {field}={key}"
    return f"it takes: {', '.join(fields)}"


def renamed(opdef: OpDef, kwargs: Mapping[str, Any]) -> set[str]:
    """The parameters that an unknown key given means (`scale_factor=` means `scale`): not
    also reported as missing."""
    fields = list(opdef.params.model_fields)
    return {m for k in kwargs if k not in fields and (m := param_meant(k, fields)) is not None}


def missing(opdef: OpDef, key: str) -> tuple[str, str]:
    """The message and hint for a parameter that has no default and was not given."""
    if key in opdef.positional:
        upto = opdef.positional[: opdef.positional.index(key) + 1]
        shown = " ".join(p.upper() for p in upto)
        return f"'{opdef.name}' needs its {key}", f"write '{opdef.name} {shown}', or {key}="
    return f"'{opdef.name}' needs {key}=", f"write {key}= and its value"


# What defines a name that a parameter needs, where it is not a constant.
_DEFINED_BY = {"connect": "table", "fixed": "kernel"}


def unknown_name(word: str, key: str) -> str:
    """The hint for a name that nothing defines, with no near spelling: how to define it."""
    if key in _DEFINED_BY:
        return f"define it outside the network: '{_DEFINED_BY[key]} {word} = [...]'"
    return f"define it outside the network ('const {word} = ...'), or give --set {word}=VALUE"


def _fits(model: type[BaseModel], kwargs: Mapping[str, Any], keys: Sequence[str]) -> bool:
    """Whether `kwargs` validate, as far as the parameters `keys` go."""
    try:
        model.model_validate(kwargs)
    except ValidationError as e:
        return not any(err.get("loc") and str(err["loc"][0]) in keys for err in e.errors())
    return True


def _reordered(
    opdef: OpDef, given: Sequence[tuple[str, ast.Arg]], kwargs: Mapping[str, Any], key: str
) -> str | None:
    """`conv 3x3 16`: the positional values swapped fit; `conv 3x3`: the value fits the
    next positional parameter, so the one before it was left out."""
    keys = [k for k, _ in given]
    texts = {k: written(a.value) for k, a in given}
    if key not in keys or any(t is None for t in texts.values()):
        return None
    if len(keys) == 2:
        swapped = {**kwargs, keys[0]: kwargs[keys[1]], keys[1]: kwargs[keys[0]]}
        if _fits(opdef.params, swapped, keys):
            shown = f"{texts[keys[1]]} {texts[keys[0]]}"
            return f"'{opdef.name}' takes {keys[0]}, then {keys[1]}: write '{opdef.name} {shown}'"
    at = opdef.positional.index(key)
    if len(keys) == at + 1 and at + 1 < len(opdef.positional):
        following = opdef.positional[at + 1]
        shifted = {k: v for k, v in kwargs.items() if k != key} | {following: kwargs[key]}
        if _fits(opdef.params, shifted, [following]):
            before = " ".join(str(texts[k]) for k in keys[:at])
            shown = " ".join(s for s in (before, key.upper(), texts[key]) if s)
            return f"'{opdef.name}' takes its {key} first: write '{opdef.name} {shown}'"
    return None


def value_hint(
    opdef: OpDef,
    stage: ast.Op | ast.Call,
    kwargs: Mapping[str, Any],
    key: str,
    errs: Sequence[Mapping[str, Any]],
) -> str | None:
    """A hint for a value `opdef` refuses for `key`, where the value itself suggests one:
    positional values in the wrong order, another framework's word for an allowed one
    (`init=he`), a percentage for a fraction, a whole number written with a decimal point."""
    value = kwargs.get(key)
    given = list(zip(opdef.positional, [a for a in stage.args if a.name is None], strict=False))
    order = _reordered(opdef, given, kwargs, key)
    if order is not None:
        return order
    kinds = {str(e.get("type")) for e in errs}
    if isinstance(value, str):
        options = literal_options(errs)
        meant = VALUES.get(value.lower())
        if meant in options:
            return f"netspec calls it {key}={meant}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        bounds = [e.get("ctx", {}).get("lt") for e in errs if e.get("type") == "less_than"]
        if bounds == [1] and 1 < value <= 100:
            return f"a fraction, not a percentage: {value / 100:g}"
        if kinds & {"int_type", "int_from_float"} and float(value).is_integer():
            return f"a whole number is written without a point: {int(value)}"
    return None


def setting_hint(
    op: ast.Op,
    sections: Mapping[str, type[BaseModel] | None],
    keys: Mapping[str, tuple[str, ...]],
) -> str | None:
    """The hint for an unknown training setting: netspec's name for it (`batch_size` is
    `batch`), the setting a value belongs to (`lr 0.1` is `optimizer sgd lr=0.1`), or the
    nearest spelling. `sections` are the settings and their models, `keys` where each
    `--set` key lands."""
    key = SETTINGS.get(op.name, op.name)
    if key in sections and key != op.name:
        return f"netspec calls it '{key}'"
    path = keys.get(key, ())
    if len(path) == 2 and sections.get(path[0]) is not None:
        section, field = path
        value = written(op.args[0].value) if len(op.args) == 1 else None
        model = sections[section]
        default = model.model_fields.get("name") if model is not None else None
        name = default.default if default is not None else None
        shown = " ".join(str(w) for w in (section, name, f"{field}={value or 'VALUE'}") if w)
        return f"{field}= belongs to '{section}': write '{shown}'"
    return did_you_mean(op.name, [*sections, "augment"])
