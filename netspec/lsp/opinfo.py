"""What an operation takes, read from its parameter model (netspec.ops): each parameter's
name, default and allowed words, for completion and hover.

>>> for p in parameters(REGISTRY["pad"]):
...     print(p.name, p.default, p.words)
widths None ()
mode constant ('constant', 'reflect', 'replicate')
value 0.0 ()
>>> signature(REGISTRY["maxpool"])
'maxpool kernel to stride=none pad=0 ceil=false dilation=1'
"""

from __future__ import annotations

import types as pytypes
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from netspec.ops import REGISTRY, OpDef

__all__ = ["REGISTRY", "Param", "parameters", "signature"]


@dataclass(frozen=True)
class Param:
    name: str
    default: str | None  # as a spec writes it; None when the parameter must be given
    words: tuple[str, ...]  # the words it takes (`same`, `valid`; `true`, `false`)
    positional: bool


def words(annotation: Any) -> tuple[str, ...]:
    """The words a type allows: its Literal strings and, for a bool, true and false."""
    if annotation is bool:
        return ("true", "false")
    origin = get_origin(annotation)
    if origin is Literal:
        return tuple(str(v).lower() for v in get_args(annotation))
    if origin is Annotated:
        return words(get_args(annotation)[0])
    if origin is Union or origin is pytypes.UnionType:
        found: list[str] = []
        for arg in get_args(annotation):
            found += [w for w in words(arg) if w not in found]
        return tuple(found)
    return ()


def _shown(value: Any) -> str:
    """A default as a spec writes it: `1` for (1, 1), `none`, `false`, `3x1`."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        if value and all(v == value[0] for v in value) and len(value) == 2:
            return _shown(value[0])
        return "x".join(_shown(v) for v in value)
    return str(value)


def _default(info: FieldInfo) -> str | None:
    if info.default is PydanticUndefined:
        return None if info.default_factory is None else "..."
    return _shown(info.default)


def parameters(opdef: OpDef) -> list[Param]:
    """Every parameter of the operation, positional ones first, then `tie` if it has
    weights to share."""
    fields = opdef.params.model_fields
    ordered = [*opdef.positional, *(n for n in fields if n not in opdef.positional)]
    found = [
        Param(n, _default(fields[n]), words(fields[n].annotation), n in opdef.positional)
        for n in ordered
        if n in fields
    ]
    if opdef.weighted:
        found.append(Param("tie", "none", (), False))
    return found


def signature(opdef: OpDef) -> str:
    """`conv channels kernel stride=1 pad=0 ...`: how the operation is written."""
    parts = [opdef.name]
    for p in parameters(opdef):
        if p.name == "tie":
            continue
        default = "(required)" if p.default is None else p.default
        parts.append(p.name if p.positional else f"{p.name}={default}")
    return " ".join(parts)
