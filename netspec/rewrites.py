"""Rewrites of a compiled network's graph, after inference: one way in.

A rewrite takes a checked network (`Compiled`) and gives the graph of another that
computes something related: a window classifier made fully convolutional
(`netspec.export.fcn_graph.fcn_rewrite`). It is a `Rewrite` record, as a pass is a
`Pass` record (netspec/passes/state.py): its function, the conditions it needs of the
network it is given and those it ensures of the one it returns.

`rewrite(compiled, *rewrites)` applies them in order. For each, it checks what the rewrite
needs (a condition that fails raises the error it gives, which names what is wrong with
the network: a refusal, not a bug), rewrites the graph, infers the new graph as the
compiler infers a spec's (shapes, receptive fields, costs: never made by hand; a
`SpecError` where they do not fit), then checks what the rewrite ensures (a failure there
is a bug in netspec: `PipelineError`). The result keeps the spec's program, so its
layers keep their spans; it has no training section (its network is not the one the
spec trains) and no warnings (they were the spec's).

Not graph rewrites, so not here: a detector's decoding (netspec.export.detection wraps
the torch module in decoding code that no operation expresses) and `show`'s
receptive-field twin (netspec.show.receptive swaps torch modules, a max-pool for a sum
over the same windows, which no registered operation is).

>>> from netspec.compiler import compile
>>> from netspec.errors import UsageError
>>> def one_output(c: Compiled) -> UsageError | None:
...     return None if len(c.graph.outputs) == 1 else UsageError(f"{c.name}: outputs")
>>> def last_dropped(c: Compiled) -> Graph:
...     g = c.graph
...     return Graph(g.name, g.inputs, g.nodes[:-1], (g.nodes[-2].name,), g.span)
>>> single = Condition("one output", one_output)
>>> drop = Rewrite("drop the last layer", last_dropped, needs=(single,))
>>> net = compile("network n(x: 3x8x8) { conv 4 3x3 | relu }")
>>> [(layer.name, layer.shape) for layer in rewrite(net, drop).layers]
[('conv1', (4, 6, 6))]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from netspec.compiler import Compiled
from netspec.errors import NetspecError
from netspec.ir import Graph
from netspec.passes.infer import infer_graph
from netspec.passes.state import PipelineError

__all__ = ["Condition", "Rewrite", "rewrite"]


@dataclass(frozen=True)
class Condition:
    """A named fact about a compiled network: `problem` gives the error that says why it
    does not hold, or None when it does."""

    name: str
    problem: Callable[[Compiled], NetspecError | None]


@dataclass(frozen=True)
class Rewrite:
    """One rewrite: its function from a compiled network to the new graph, the conditions
    it needs of the network and those it ensures of the rewritten one."""

    name: str
    run: Callable[[Compiled], Graph]
    needs: tuple[Condition, ...] = ()
    ensures: tuple[Condition, ...] = ()


def rewrite(compiled: Compiled, *rewrites: Rewrite) -> Compiled:
    """`compiled` rewritten by each of `rewrites` in turn, each result inferred afresh
    (module docstring): the error of the first need that fails, a SpecError where the
    rewritten graph does not fit, PipelineError where a rewrite breaks what it ensures."""
    for step in rewrites:
        for need in step.needs:
            error = need.problem(compiled)
            if error is not None:
                raise error
        graph = step.run(compiled)
        compiled = Compiled(compiled.program, graph, infer_graph(graph), None, [])
        for fact in step.ensures:
            error = fact.problem(compiled)
            if error is not None:
                raise PipelineError(
                    f"rewrite '{step.name}' did not ensure {fact.name}: {error.message}"
                )
    return compiled
