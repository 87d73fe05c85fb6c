"""What each place in the text made: the graph nodes written there, with what inference
knows of them (shape, receptive field, parameters, MACs), for hover and inlay hints.

A node is written at its own span, and at every call site it was expanded from (a block's
call in a network, a repeat). A place is one such span: hovering the call `basic(64)`
reads every node of that call, hovering `conv c 3x3` in the block reads that convolution
in every call of the block; one expansion of a place is the nodes one call made there.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from netspec.compiler import Analysis
from netspec.diagnostics import Span
from netspec.ir import Node, Shape
from netspec.lsp.positions import contains, span_size
from netspec.passes.infer import Layer


@dataclass(frozen=True)
class Made:
    """One node, as seen from one place it was written: `outer` are the call sites around
    that place, which tell one expansion of it from another."""

    node: Node
    layer: Layer | None  # None where inference did not finish
    place: Span
    outer: tuple[Span, ...]
    order: tuple[int, int]  # (network, node): graph order across the networks analyzed
    network: str

    @property
    def own(self) -> bool:
        """Whether the place is the node's own stage, not a call it was expanded from."""
        return len(self.outer) == len(self.node.origin)


@dataclass(frozen=True)
class _Known:
    node: Node
    layer: Layer | None
    order: tuple[int, int]
    network: str


class Facts:
    """The nodes of every network analyzed, found by where they were written."""

    def __init__(self, analyses: Sequence[Analysis]) -> None:
        self.known: list[_Known] = []
        self._outputs: dict[str, dict[int, list[Made]]] = {}
        for n, analysis in enumerate(analyses):
            graph = analysis.graph
            if graph is None:
                continue
            inferred = analysis.inferred
            for i, node in enumerate(graph.nodes):
                layer = inferred.layers[i] if inferred is not None else None
                self.known.append(_Known(node, layer, (n, i), graph.name))

    def _made(self, file: str) -> Iterable[Made]:
        for k in self.known:
            places = (*k.node.origin, k.node.span)
            for depth, place in enumerate(places):
                if place.file == file:
                    yield Made(k.node, k.layer, place, places[:depth], k.order, k.network)

    def at(self, file: str, line: int, col: int) -> list[Made]:
        """The nodes written at the innermost place that holds 1-based (line, col); else
        those of the last place that ends on that line."""
        here = [m for m in self._made(file) if contains(m.place, line, col)]
        if not here:
            here = [m for m in self._made(file) if m.place.end_line == line]
            if not here:
                return []
            last = max((m.place.end_col, m.place.col) for m in here)
            return [m for m in here if (m.place.end_col, m.place.col) == last]
        inner = min(span_size(m.place) for m in here)
        place = min((m.place for m in here if span_size(m.place) == inner), key=_start)
        return [m for m in here if m.place == place]

    def line_outputs(self, file: str) -> dict[int, list[Made]]:
        """For each line of `file`, the last node each expansion of it made (a line of a
        block called three times made three): what the line outputs."""
        found = self._outputs.get(file)
        if found is None:
            on_line: dict[int, dict[tuple[int, int], Made]] = {}
            for m in self._made(file):
                on_line.setdefault(m.place.end_line, {}).setdefault(m.order, m)
            found = {
                line: [run[-1] for run in instances(list(made.values()))]
                for line, made in sorted(on_line.items())
            }
            self._outputs[file] = found
        return found


def _start(span: Span) -> tuple[int, int]:
    return (span.line, span.col)


def instances(made: Sequence[Made]) -> list[list[Made]]:
    """`made` in expansions, each in graph order. One expansion of a place made consecutive
    nodes; a stage's own place makes one node per expansion, so meeting it again starts
    the next (a block's line called by `repeat` makes consecutive runs of it)."""
    runs: list[list[Made]] = []
    for m in sorted(made, key=lambda m: m.order):
        run = runs[-1] if runs else None
        if (
            run is None
            or run[-1].order != (m.order[0], m.order[1] - 1)
            or (m.place == run[0].place and m.own)
        ):
            runs.append([m])
        else:
            run.append(m)
    return runs


def shapes_of(made: Iterable[Made]) -> list[Shape]:
    """The distinct output shapes, in order."""
    seen: list[Shape] = []
    for m in made:
        if m.layer is not None and m.layer.shape not in seen:
            seen.append(m.layer.shape)
    return seen
