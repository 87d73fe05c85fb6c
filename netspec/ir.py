"""The graph IR: a flat list of nodes in topological order, named by dotted paths.

`expand` builds it from the AST; `infer` annotates it; `lower` turns it into a
torch module. Shapes are per sample (no batch axis): `(C, H, W)` or `(F,)`,
and a spatial size may be a symbol such as `"H"` for fully convolutional nets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from netspec.diagnostics import UNKNOWN, Span

Dim = int | str
Shape = tuple[Dim, ...]


class OpParams(BaseModel):
    """Base of every operation's parameter model: frozen, no unknown keys."""

    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class Node:
    """One operation applied to named inputs.

    `shares` names the node whose parameters this one uses (a shared block's
    second use, or `tie=`): the parameters exist once, on that node.
    """

    name: str
    op: str
    params: OpParams
    inputs: tuple[str, ...]
    span: Span = UNKNOWN
    origin: tuple[Span, ...] = ()  # the call sites this node was expanded from
    shares: str | None = None


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: Shape
    span: Span = UNKNOWN


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[GraphInput, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    span: Span = UNKNOWN
    symbols: dict[str, int] = field(default_factory=dict)  # values bound for symbolic dims

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
