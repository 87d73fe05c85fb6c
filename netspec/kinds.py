"""What each output of a compiled network is: its name in the spec, its kind and its shape.

The kinds are the file format's (`netspec.artifact.KINDS`); export records them, `run`
acts on them, `compile` prints them. This module imports neither numpy nor torch.

An output's kind is decided once, here, by this rule:

- declared in the spec (`output code: embedding`), it is what is declared;
- ending in a head (an operation whose `OpDef.head` is set: `detect boxes=2 classes=10`),
  it is the head's kind, its `OpDef.output` (`boxes` for `detect`), whatever its shape;
- a vector `F` (or `F x 1 x 1`, NiN's global pooling of class maps) is class scores, in the
  sense its last operation gives (`softmax`: probabilities, `rbf`: distances, else logits);
- a `C x H x W` output (or `C x L`, along a 1-D signal) with more than one position is a
  map (a dense prediction: a reconstruction, a density, per-pixel class scores, whatever
  its last operation);
- any other shape is a raw tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netspec.artifact import OutputInfo, OutputKind
from netspec.ir import Graph, Node, Shape
from netspec.ops import REGISTRY, RF
from netspec.ops.detection import Head, head_of
from netspec.syntax import ast

if TYPE_CHECKING:
    from netspec.compiler import Compiled


def output_kind(graph: Graph, output: str) -> OutputKind:
    """What a vector output's class scores are (or a head's output): the registry's `output`
    fact of its last operation, looking through those that pass their input's meaning on
    (identity, dropout, flatten). Plain logits when only pass-through operations stand
    between it and an input."""
    node = _last(graph, output)
    meaning = "pass" if node is None else REGISTRY[node.op].output
    return "logits" if meaning == "pass" else meaning


def _last(graph: Graph, output: str) -> Node | None:
    """The node that decides what ``output`` means: itself, or the first before it that
    does not pass its input's meaning on; None where only those stand after an input."""
    nodes = {n.name: n for n in graph.nodes}
    node = nodes.get(output)
    while node is not None and REGISTRY[node.op].output == "pass":
        node = nodes.get(node.inputs[0]) if node.inputs else None
    return node


def kind_of_shape(graph: Graph, output: str, shape: Shape) -> OutputKind:
    """The inferred kind of an undeclared output of this per-sample shape (the rule above).

    >>> import netspec
    >>> g = netspec.compile("network n(x: 1x8x8) {\\n    conv 2 3x3\\n}\\n").graph
    >>> kind_of_shape(g, g.outputs[0], (2, 6, 6)), kind_of_shape(g, g.outputs[0], (2, 1, 1))
    ('map', 'logits')
    >>> kind_of_shape(g, g.outputs[0], (4, 100)), kind_of_shape(g, g.outputs[0], (2, 3, 4, 5))
    ('map', 'tensor')
    """
    last = _last(graph, output)
    if last is not None and REGISTRY[last.op].head:  # a head (`detect`): its own kind
        return REGISTRY[last.op].output
    if len(shape) == 1 or (len(shape) in (2, 3) and all(d == 1 for d in shape[1:])):
        return output_kind(graph, output)
    if len(shape) in (2, 3):  # C x L along a signal, C x H x W over an image
        return "map"
    return "tensor"


def output_infos(compiled: Compiled) -> tuple[OutputInfo, ...]:
    """Every output of the network, in order: its spec name, its kind and its shape."""
    graph = compiled.graph
    names = spec_output_names(compiled)
    declared = declared_kinds(compiled)
    infos = []
    for node, name in zip(graph.outputs, names, strict=True):
        shape = tuple(compiled.inferred.layer(node).shape) if node in _layers(compiled) else None
        if shape is None:  # an input passed straight out
            shape = next(tuple(i.shape) for i in graph.inputs if i.name == node)
        kind = (
            declared.get(name) or _kind_of_sets(compiled, node) or kind_of_shape(graph, node, shape)
        )
        infos.append(OutputInfo(name, kind, shape))
    return tuple(infos)


def _kind_of_sets(compiled: Compiled, node: str) -> OutputKind | None:
    """A RoI set, or a tensor of regions (``K x ...`` per image, after a RoI pooling), is a
    raw tensor, whatever its shape: neither a map nor class scores of the image."""
    if node not in _layers(compiled):
        return None
    layer = compiled.inferred.layer(node)
    return "tensor" if layer.regions or REGISTRY[layer.op].makes_rois else None


def _layers(compiled: Compiled) -> set[str]:
    return {layer.name for layer in compiled.layers}


def spec_output_names(compiled: Compiled) -> tuple[str, ...]:
    """The names the spec gives its outputs (`output density, box` -> `density`, `box`; a
    last statement `logits = ...` -> `logits`; else the layer's own name, `cls.1`), made
    unique (`output a, a` -> `a`, `a_2`)."""
    graph = compiled.graph
    network = compiled.program.networks.get(graph.name)
    written = _written_names(network) if network is not None else ()
    if len(written) != len(graph.outputs):
        written = graph.outputs
    inputs = {i.name for i in graph.inputs}
    taken: set[str] = set()
    names: list[str] = []
    for node, name in zip(graph.outputs, written, strict=True):
        chosen = node if name in inputs and name != node else name  # an input passed out
        base, n = chosen, 2
        while chosen in taken:  # `output a, a`: the second is a_2
            chosen, n = f"{base}_{n}", n + 1
        taken.add(chosen)
        names.append(chosen)
    return tuple(names)


def _written_names(network: ast.Network) -> tuple[str, ...]:
    """The names of the network's last `output` statement, or of its last statement when
    that is an assignment."""
    outputs = [st for st in network.body if isinstance(st, ast.Output)]
    if outputs:
        return tuple(n.name for n in outputs[-1].names)
    last = network.body[-1] if network.body else None
    return (last.target,) if isinstance(last, ast.Assign) else ()


def declared_kinds(compiled: Compiled) -> dict[str, OutputKind]:
    """Kinds the spec declares for its outputs (`output code: embedding`)."""
    network = compiled.program.networks.get(compiled.graph.name)
    if network is None:
        return {}
    declared: dict[str, OutputKind] = {}
    for st in network.body:
        if isinstance(st, ast.Output):
            for name, kind in zip(st.names, st.kinds, strict=False):
                if kind is not None and kind.name in _DECLARED:
                    declared[name.name] = _DECLARED[kind.name]
    return declared


# The words a spec may declare an output's kind with, and the file format's kind for each.
_DECLARED: dict[str, OutputKind] = {
    "scores": "logits",
    "map": "map",
    "embedding": "embedding",
    "tensor": "tensor",
}


def head_node(compiled: Compiled) -> Node | None:
    """The node of the network's head (an operation whose `OpDef.head` is set) when its one
    output ends in one, through what passes its input on."""
    graph = compiled.graph
    node = _last(graph, graph.outputs[0]) if len(graph.outputs) == 1 else None
    return node if node is not None and REGISTRY[node.op].head else None


@dataclass(frozen=True)
class Site:
    """Where the network's head sits, as what its rules are given: the head node's
    parameters, its inputs' and its output's per-sample shapes, its output's receptive field,
    and the network input's per-sample shape (the image its boxes are in)."""

    params: Any
    inputs: tuple[Shape, ...]
    shape: Shape
    rf: RF
    image: Shape


def head_site(compiled: Compiled) -> Site | None:
    """The network's head as a `Site`, when its one output ends in one."""
    node = head_node(compiled)
    if node is None:
        return None
    graph = compiled.graph
    shapes = {i.name: tuple(i.shape) for i in graph.inputs}
    shapes.update((layer.name, tuple(layer.shape)) for layer in compiled.layers)
    layer = compiled.inferred.layer(node.name)
    inputs = tuple(shapes[i] for i in node.inputs)
    return Site(node.params, inputs, tuple(layer.shape), layer.rf, tuple(graph.inputs[0].shape))


def detection_head(compiled: Compiled) -> Head | None:
    """The network's `detect` head when its one output ends in one: its grid, boxes and
    classes per cell, thresholds, and what one cell covers of the input."""
    site = head_site(compiled)
    return None if site is None else head_of(site.params, site.shape, site.rf, site.image)
