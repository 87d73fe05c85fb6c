"""The graph IR: a flat list of nodes in topological order, named by dotted paths.

`expand` builds it from the AST; `infer` annotates it; `lower` turns it into a
torch module. Shapes are per sample (no batch axis): `(C, H, W)` or `(F,)`,
and a spatial size may be a symbol such as `"H"` for fully convolutional nets.
Spans (and the call sites a node was expanded from) are left out of equality.
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
    span: Span = field(default=UNKNOWN, compare=False)
    # the call sites this node was expanded from
    origin: tuple[Span, ...] = field(default=(), compare=False)
    shares: str | None = None


@dataclass(frozen=True)
class GraphInput:
    name: str
    shape: Shape
    span: Span = field(default=UNKNOWN, compare=False)


@dataclass(frozen=True)
class Graph:
    name: str
    inputs: tuple[GraphInput, ...]
    nodes: tuple[Node, ...]
    outputs: tuple[str, ...]
    span: Span = field(default=UNKNOWN, compare=False)
    symbols: dict[str, int] = field(default_factory=dict)  # values bound for symbolic dims
    _by_name: dict[str, Node] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {n.name: n for n in self.nodes})

    def node(self, name: str) -> Node:
        """The node called `name` (KeyError if there is none), from an index built once."""
        return self._by_name[name]
