"""infer: shapes, receptive fields, parameters, multiply-adds and memory of every
node, before anything is allocated.

Parameters shared by several nodes are counted once, on the node that owns them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from netspec.diagnostics import Collector, Diagnostic, Span
from netspec.ir import Graph, Node, OpParams, Shape
from netspec.ops import REGISTRY, RF, Cost, ShapeError
from netspec.ops.registry import numel
from netspec.passes.regions import Kinds, per_region_rf, shape_and_cost
from netspec.passes.state import CompileState, Pass, need
from netspec.text import fmt_shape


@dataclass(frozen=True)
class Layer:
    """What is known of one node once its inputs' shapes are."""

    name: str
    op: str
    shape: Shape
    rf: RF
    params: int  # trainable, 0 where the node uses another node's parameters
    fixed: int
    macs: int | None
    shared_with: str | None
    span: Span
    in_shapes: tuple[Shape, ...] = ()
    # its output's leading axis counts this many regions of each image (a RoI pooling's, and
    # what is applied per region after it: `per_region`); 0 for images (netspec.passes.regions)
    regions: int = 0
    per_region: bool = False
    placed: OpParams | None = None  # what its builder is given, where `OpDef.placed` says

    @property
    def activations(self) -> int | None:
        return numel(self.shape)


@dataclass(frozen=True)
class Totals:
    params: int  # trainable + fixed
    trainable_params: int
    fixed_params: int
    macs: int | None
    activations: int | None  # elements per sample, inputs and every layer's output
    layers: int

    @property
    def memory_per_sample(self) -> int | None:
        """Bytes of float32 activations one sample keeps for the backward pass."""
        return None if self.activations is None else 4 * self.activations


@dataclass(frozen=True)
class Inferred:
    graph: Graph
    layers: tuple[Layer, ...]
    totals: Totals
    _by_name: dict[str, Layer] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {layer.name: layer for layer in self.layers})

    def layer(self, name: str) -> Layer:
        """The layer of node `name` (KeyError if there is none)."""
        return self._by_name[name]


def _input_rf(shape: Shape) -> RF:
    """A pixel of the input; a 1-D signal (C x L) moves along its one axis only."""
    return RF(line=len(shape) == 2)


def _diag(
    node: Node, e: ShapeError, in_shapes: list[Shape], made_at: dict[str, Span]
) -> Diagnostic:
    """A shape error at the node, naming where each of its inputs came from."""
    diag = Diagnostic("E301", f"{node.op} '{node.name}': {e.message}", node.span, hint=e.hint)
    if len(in_shapes) == 1:
        diag = diag.with_note(f"its input is {fmt_shape(in_shapes[0])}")
    else:
        for name, shape in zip(node.inputs, in_shapes, strict=True):
            diag = diag.with_note(f"'{name}' is {fmt_shape(shape)}", made_at.get(name))
    for site in reversed(node.origin):
        diag = diag.with_note("expanded from here", site)
    return diag


def _check_share(
    node: Node, owner: Layer | None, in_shapes: list[Shape], cost: Cost
) -> Diagnostic | None:
    if owner is None:
        return Diagnostic(
            "E302",
            f"'{node.name}' shares weights with '{node.shares}', which "
            "comes later or has no weights",
            node.span,
        )
    same_inputs = [s[:1] for s in owner.in_shapes] == [s[:1] for s in in_shapes]
    if owner.op != node.op or owner.params != cost.params or not same_inputs:
        return Diagnostic(
            "E303",
            f"'{node.name}' cannot share the weights of '{owner.name}': their weights "
            "differ in shape",
            node.span,
            hint=f"'{owner.name}' is {owner.op} with {owner.params:,} parameters on "
            f"{', '.join(fmt_shape(s) for s in owner.in_shapes)}",
        ).with_note("the layer whose weights are shared", owner.span)
    return None


# Receptive fields are floats: a size or stride product past this is a spec asking for the
# absurd, refused while one more layer (values up to MAX_VALUE) cannot overflow a float.
_MAX_RF = 1e30


def _rf_ok(rf: RF) -> bool:
    return all(math.isfinite(v) and abs(v) <= _MAX_RF for v in (*rf.size, *rf.jump, *rf.start))


def _too_large(node: Node, what: str) -> Diagnostic:
    diag = Diagnostic(
        "E304",
        f"{node.op} '{node.name}': its {what} is too large to compute",
        node.span,
        hint="sizes, strides and pads this large cannot be meant; check the numbers",
    )
    for site in reversed(node.origin):
        diag = diag.with_note("expanded from here", site)
    return diag


def _shape_ok(shape: Shape) -> bool:
    return all(isinstance(d, str) or 0 <= d <= _MAX_RF for d in shape)


def infer_graph(graph: Graph) -> Inferred:
    """Annotate every node; report every shape error (a failed node silences its dependents)."""
    errors = Collector()
    shapes: dict[str, Shape] = {i.name: i.shape for i in graph.inputs}
    rfs: dict[str, RF] = {i.name: _input_rf(i.shape) for i in graph.inputs}
    layers: dict[str, Layer] = {}
    failed: set[str] = set()
    made_at = {i.name: i.span for i in graph.inputs} | {n.name: n.span for n in graph.nodes}
    kinds = Kinds.of(graph)
    image = graph.inputs[0].shape if graph.inputs else ()
    for node in graph.nodes:
        if any(i in failed for i in node.inputs):
            failed.add(node.name)
            continue
        opdef = REGISTRY[node.op]
        in_shapes = [shapes[i] for i in node.inputs]
        in_rfs = [rfs[i] for i in node.inputs]
        try:
            k = kinds.per_region(node, opdef)
            shape, cost = shape_and_cost(opdef, node, in_shapes, k)
        except ShapeError as e:
            errors.add(_diag(node, e, in_shapes, made_at))
            failed.add(node.name)
            continue
        rf = _receptive_field(node, in_rfs, in_shapes, k) if _shape_ok(shape) else None
        if rf is None:
            errors.add(_too_large(node, "output" if not _shape_ok(shape) else "receptive field"))
            failed.add(node.name)
            continue
        try:
            placed = (
                None
                if opdef.placed is None
                else opdef.placed(node.params, in_rfs, in_shapes, image)
            )
        except ShapeError as e:
            errors.add(_diag(node, e, in_shapes, made_at))
            failed.add(node.name)
            continue
        if node.shares is not None:
            problem = _check_share(node, layers.get(node.shares), in_shapes, cost)
            if problem is not None:
                errors.add(problem)
            cost = Cost(params=0, fixed=0, macs=cost.macs)
        kinds.record(node, opdef, shape, k)
        shapes[node.name] = shape
        rfs[node.name] = rf
        layers[node.name] = Layer(
            node.name,
            node.op,
            shape,
            rf,
            cost.params,
            cost.fixed,
            cost.macs,
            node.shares,
            node.span,
            tuple(in_shapes),
            regions=kinds.regions.get(node.name, 0),
            per_region=bool(k),
            placed=placed,
        )
    errors.raise_if_any()
    ordered = tuple(layers[n.name] for n in graph.nodes)
    return Inferred(graph, ordered, _totals(graph, ordered))


def _receptive_field(node: Node, rfs: list[RF], in_shapes: list[Shape], k: int) -> RF | None:
    """The node's receptive field (applied per region, its input's region's); None when it
    is too large for float arithmetic."""
    shapes = [s[1:] for s in in_shapes] if k else in_shapes
    try:
        rf = REGISTRY[node.op].receptive_field(node.params, rfs, shapes)
    except OverflowError:
        return None
    if k:
        rf = per_region_rf(rfs[0], rf)
    return rf if _rf_ok(rf) else None


def infer(state: CompileState) -> None:
    state.inferred = infer_graph(need(state.graph))


INFER = Pass("infer", infer, needs=("graph",), ensures=("inferred",))


def _sum_or_none(values: list[int | None]) -> int | None:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def _totals(graph: Graph, layers: tuple[Layer, ...]) -> Totals:
    trainable = sum(layer.params for layer in layers)
    fixed = sum(layer.fixed for layer in layers)
    acts = _sum_or_none([numel(i.shape) for i in graph.inputs] + [la.activations for la in layers])
    return Totals(
        params=trainable + fixed,
        trainable_params=trainable,
        fixed_params=fixed,
        macs=_sum_or_none([layer.macs for layer in layers]),
        activations=acts,
        layers=len(layers),
    )
