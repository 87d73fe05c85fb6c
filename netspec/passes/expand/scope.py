"""Scopes: what names mean inside a network, a block call, a group branch or a shared body."""

from __future__ import annotations

from collections.abc import Container, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from netspec.diagnostics import Span, spec_error
from netspec.ops import REGISTRY
from netspec.passes.expand.sharing import SharedDef

FAILED = "<failed>"  # the result of a statement that had an error


class Skip(Exception):
    """A stage reads the result of a statement that already failed: say nothing more."""


@dataclass
class Scope:
    """Names of one body: the tensors it has computed, its shared sub-networks, and the
    prefix and counters that name its nodes."""

    prefix: str
    values: dict[str, Any]
    tensors: dict[str, str] = field(default_factory=dict)  # tensor name -> node name
    shared: dict[str, SharedDef] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    origin: tuple[Span, ...] = ()  # the call sites this body was expanded from
    stack: tuple[str, ...] = ()  # the blocks being expanded, outermost first
    assigned: dict[str, Span] = field(default_factory=dict)  # `x = ...` results, for W301
    sites: tuple[tuple[str, Span], ...] = ()  # (what, where) of each enclosing call

    def label(self, label: str | None, base: str) -> str:
        """The given label, else the operation's name and a counter: conv1, conv2, ...
        (relu6_1 after a name that ends in a digit, which relu61 would hide)."""
        if label is not None:
            return label
        self.counters[base] = self.counters.get(base, 0) + 1
        return f"{base}{'_' if base[-1].isdigit() else ''}{self.counters[base]}"

    def child(
        self, prefix: str, values: dict[str, Any], site: Span, what: str, block: str | None = None
    ) -> Scope:
        """The scope of a block's or shared sub-network's body, called at `site`."""
        stack = (*self.stack, block) if block else self.stack
        sites = (*self.sites, (what, site))
        return Scope(prefix, values, origin=(*self.origin, site), stack=stack, sites=sites)

    def branch(self, prefix: str) -> Scope:
        """The scope of one branch of a group: it sees this scope's names, adds its own."""
        return Scope(
            prefix,
            self.values,
            dict(self.tensors),
            self.shared,
            origin=self.origin,
            stack=self.stack,
            sites=self.sites,
        )

    def reading(self, values: Mapping[str, Any]) -> Scope:
        """This scope, its arguments read against `values` instead: a stage given to a block
        with its arguments reads them where it was written. Its tensors, counters and names
        are this scope's own (the same dictionaries)."""
        return replace(self, values=dict(values))

    def fresh(self, name: str, span: Span, blocks: Container[str]) -> None:
        """Refuse a new tensor name that is taken here, or names an operation or block."""
        if name in self.tensors or name in self.shared:
            raise spec_error(
                "E210",
                f"'{name}' is already defined in this scope",
                span,
                hint="choose another name",
            )
        if name in REGISTRY or name in blocks:
            raise spec_error(
                "E210",
                f"'{name}' names an operation or block; it cannot also name a tensor",
                span,
                hint="choose another name",
            )
