"""expand: instantiate blocks, repeats, branches and shared sub-networks into a flat
Graph whose nodes are named by dotted paths (`layer3.1.conv2`).

Naming: a stage written as `x = stage` or `stage as x` is called `x`; the
stages of `x = a | b` are `x.0` and `x.1`; an unnamed stage takes its
operation's (or block's) name and a counter, `conv1`, `conv2`, ...; a block
call's nodes live under its name, branches of a group under `group.0`, ...;
`a, b = split 58` names each piece's `slice` after its name.

The package, each module one concern:
- `scope.py`    what names mean inside one body (tensors, shared, counters)
- `walk.py`     the walk over statements and stages that emits nodes
- `blocks.py`   block calls: recursion and depth checks, binding arguments
- `stages.py`   operations and blocks given to a block as arguments (`act=relu`)
- `several.py`  `a, b = split 58`, `x1, x2 = unit(c)`: several names for several tensors
- `sharing.py`  which node owns the weights of each shared use
- `nodes.py`    emitting nodes: unique names, the node limit, reads of each tensor
- `facts.py`    what the walk leaves for the lints (named results, shared definitions)

>>> from netspec.passes import bind, constants, define, load
>>> from netspec.passes.state import CompileState, run_passes
>>> state = CompileState("network n(x: 1x8x8) {\\n repeat 2 relu | dense 2\\n}")
>>> before = (load.LOAD, define.DEFINE, bind.BIND, constants.CONSTANTS)
>>> run_passes(state, (*before, EXPAND))  # the pass that stopped at a mistake: none
>>> [n.name for n in state.graph.nodes]
['relu1', 'relu2', 'dense1']
"""

from __future__ import annotations

from netspec.diagnostics import spec_error
from netspec.ir import Graph, GraphInput
from netspec.passes.expand.scope import Scope
from netspec.passes.expand.walk import Walker
from netspec.passes.state import CompileState, Pass, need


def expand(state: CompileState) -> None:
    """Expand the chosen network into `state.graph`; every statement's errors in one go."""
    program, network = need(state.program), need(state.network)
    values, symbols = need(state.values), need(state.symbols)
    walker = Walker(program, state.limits, values)
    scope = Scope("", dict(values))
    inputs = []
    for inp in network.inputs:
        if inp.name in scope.tensors:
            raise spec_error("E210", f"input '{inp.name}' is given twice", inp.span)
        shape = tuple(symbols.get(d, d) if isinstance(d, str) else d for d in inp.shape)
        inputs.append(GraphInput(inp.name, shape, inp.span))
        scope.tensors[inp.name] = inp.name
    walker.start(tuple(inputs))
    cursor = network.inputs[0].name if len(network.inputs) == 1 else ""
    if cursor:  # `in` is the network's input when it has one
        scope.values["in"] = walker.sizes(cursor)
        scope.tensors.setdefault("in", cursor)
    last, outputs = walker.body(network.body, scope, cursor)
    walker.errors.raise_if_any()
    nodes = walker.out.nodes
    if not nodes and not outputs:
        raise spec_error("E227", f"network '{network.name}' has no layers", network.span)
    state.graph = Graph(
        network.name, tuple(inputs), tuple(nodes), outputs or (last,), network.span, dict(symbols)
    )
    state.expansion = walker.facts


EXPAND = Pass(
    "expand",
    expand,
    needs=("program", "network", "values", "symbols", "limits"),
    ensures=("graph", "expansion"),
)
