"""What expansion leaves for the lints: the named results and shared sub-networks of
every body, and whether anything used them."""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.diagnostics import Span


@dataclass(frozen=True)
class Named:
    """A result named with `x = ...`, or a `shared` definition, in one expanded body."""

    name: str
    span: Span
    used: bool


@dataclass
class Expansion:
    results: list[Named] = field(default_factory=list)  # `x = ...`; used: read by something
    shared: list[Named] = field(default_factory=list)  # used: applied at least once
