"""The classifier's graph made fully convolutional, without torch: each dense stage a
convolution with the kernel it already is (the first one's kernel is the H x W of the map
it reads, each later one's 1 x 1), each flatten an identity, the input C x H x W for any
H, W. It is a graph rewrite (`fcn_rewrite`, run by `netspec.rewrites.rewrite`), so the
result is inferred as the compiler infers a spec, which gives the output's receptive field
(size, jump, start): what maps a position back to its window. netspec.export.fcn lowers
and writes it.

A layer converts when it looks at a window the same way at every position: what the
registry declares `sliding` (convolutions and pools), without padding or ceil mode (a
padded layer sees zeros at a window's edge, but real neighbours in the whole image), and
what acts on each position alone (`elementwise` or `pointwise`); a dense stage or a
flatten becomes what its `OpDef.on_maps` says. Anything else is refused with the reason
(`OpDef.refusal`, where the registry gives one), as are networks with no dense stage,
with merges, or whose first dense stage reads a vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.errors import ExportError
from netspec.ir import Dim, Graph, GraphInput, Node, Shape
from netspec.kinds import output_infos
from netspec.ops import REGISTRY, RF
from netspec.ops.spatial import PoolParams
from netspec.rewrites import Condition, Rewrite, rewrite
from netspec.runtime.decoders.sliding_window import SlidingWindow

Scores = Literal["logits", "probabilities"]
SIZE = ("H", "W")  # the FCN's input size names


@dataclass(frozen=True)
class FullyConvolutional:
    """The classifier's network with its dense stages as convolutions, compiled (inferred)
    for an input of `size` (symbolic `H`, `W` by default)."""

    classifier: Compiled
    compiled: Compiled
    window: tuple[int, int]  # the classifier's input (H, W)
    scores: Scores
    converted: tuple[str, ...]  # the dense stages that became convolutions

    @property
    def rf(self) -> RF:
        """The receptive field of one output position."""
        return self.compiled.inferred.layer(self.compiled.graph.outputs[0]).rf

    @property
    def jump(self) -> tuple[int, int]:
        """The output's stride in input pixels (whole numbers: every stride is)."""
        return (int(self.rf.jump[0]), int(self.rf.jump[1]))

    def sliding_window(
        self, background: int, boxes: tuple[tuple[float, float], ...] | None = None
    ) -> SlidingWindow:
        """What the runtime's `sliding_window` decoder reads: the windows' size and where
        each position's sits (the output's receptive field), the scores, the background
        class, and each class's box in its window where known."""
        rf = self.rf
        return SlidingWindow(
            self.window, rf.size, rf.jump, rf.start, self.scores, background, boxes
        )


def refusal(compiled: Compiled, what: str, hint: str | None = None) -> ExportError:
    return ExportError(f"{compiled.name}: cannot make it fully convolutional: {what}", hint=hint)


def fully_convolutional(classifier: Compiled, size: tuple[Dim, Dim] = SIZE) -> FullyConvolutional:
    """The classifier's graph with each dense stage a convolution, each flatten an identity,
    and its input C x `size`; ExportError naming the layer when it cannot convert."""
    try:
        compiled = rewrite(classifier, fcn_rewrite(size))
    except SpecError as e:  # a concrete `size` smaller than the window
        raise ExportError(f"{classifier.name}: the fully convolutional network: {e}") from None
    image = classifier.graph.inputs[0]
    window = (int(image.shape[1]), int(image.shape[2]))
    scores = _scores(classifier)
    assert scores is not None  # the rewrite needs CLASS_SCORES
    converted = tuple(node.name for node in classifier.graph.nodes if _stage(node))
    return FullyConvolutional(classifier, compiled, window, scores, converted)


# ---- the rewrite: what it needs, what it ensures, and the graph it makes ----------------


def _chain(compiled: Compiled) -> ExportError | None:
    graph = compiled.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        return refusal(
            compiled,
            f"it has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; a window "
            "classifier has one of each",
        )
    for node in graph.nodes:
        if len(node.inputs) != 1:
            return refusal(
                compiled,
                f"'{node.name}' ({node.op}) merges {len(node.inputs)} tensors; netspec "
                "converts a chain of layers",
            )
    return None


def _image(compiled: Compiled) -> ExportError | None:
    image = compiled.graph.inputs[0]
    if len(image.shape) == 3 and all(isinstance(d, int) for d in image.shape):
        return None
    return refusal(
        compiled,
        f"its input '{image.name}' is {'x'.join(map(str, image.shape))}; a window "
        "classifier takes fixed C x H x W images",
    )


def _scores(compiled: Compiled) -> Scores | None:
    """The classifier's output when it is class scores, else None."""
    kind = output_infos(compiled)[0].kind
    scores: tuple[Scores, ...] = ("logits", "probabilities")
    return next((s for s in scores if s == kind), None)


def _class_scores(compiled: Compiled) -> ExportError | None:
    if _scores(compiled) is not None:
        return None
    kind = output_infos(compiled)[0].kind
    return refusal(
        compiled, f"its output is {kind}; a detector needs class scores (logits or softmax)"
    )


def _windows(compiled: Compiled) -> ExportError | None:
    whole = [layer.name for layer in compiled.layers if layer.rf.whole]
    return (
        refusal(compiled, f"these layers see the whole input: {', '.join(whole)}")
        if whole
        else None
    )


CHAIN = Condition("a chain: one input, one output, each layer reading the one before", _chain)
IMAGE = Condition("a fixed C x H x W image input", _image)
CLASS_SCORES = Condition("class scores out (logits or probabilities)", _class_scores)
WINDOWS = Condition("every layer sees a window of the input, not all of it", _windows)


def fcn_rewrite(size: tuple[Dim, Dim] = SIZE) -> Rewrite:
    """The rewrite that makes a window classifier fully convolutional, its input C x `size`."""
    return Rewrite(
        "fully convolutional",
        partial(_fcn_graph, size=size),
        needs=(CHAIN, IMAGE, CLASS_SCORES),
        ensures=(WINDOWS,),
    )


def _fcn_graph(classifier: Compiled, size: tuple[Dim, Dim]) -> Graph:
    """Each layer as the FCN has it, and the input C x `size`; ExportError naming the first
    layer that cannot slide, or saying there is no dense stage."""
    graph = classifier.graph
    nodes: list[Node] = []
    after_dense = False
    for node in graph.nodes:
        nodes.append(_convert(classifier, node, after_dense))
        after_dense = after_dense or _stage(node)
    if not after_dense:
        raise refusal(
            classifier,
            "it has no dense stage (nothing to turn into a convolution)",
            hint="a network of convolutions alone is fully convolutional already: give its "
            "input symbolic sizes (`image: 1xHxW`) and export it",
        )
    image = graph.inputs[0]
    inputs = (GraphInput(image.name, (image.shape[0], *size), image.span),)
    return Graph(graph.name, inputs, tuple(nodes), graph.outputs, graph.span)


def _stage(node: Node) -> bool:
    """A dense stage: on maps, a convolution that takes its weights (`OpDef.on_maps`; a
    flatten, which has one too, has no weights)."""
    opdef = REGISTRY[node.op]
    return opdef.on_maps is not None and opdef.weighted


def _convert(compiled: Compiled, node: Node, after_dense: bool) -> Node:
    """The node as the FCN has it: a dense stage as a convolution, a flatten as identity."""
    opdef = REGISTRY[node.op]
    if opdef.on_maps is not None:
        window = _dense_window(compiled, node) if _stage(node) and not after_dense else (1, 1)
        op, params = opdef.on_maps(node.params, window)
        return Node(node.name, op, params, node.inputs, node.span, node.origin, node.shares)
    locality = opdef.locality_for(node.params)
    if locality == "elementwise" or locality == "pointwise":
        return node
    if locality == "sliding" and not after_dense:
        _check_window(compiled, node)
        return node
    why = opdef.refusal or f"'{node.op}' has no sliding-window form"
    raise refusal(compiled, f"'{node.name}' ({node.op}): {why}")


def _dense_window(compiled: Compiled, node: Node) -> tuple[int, int]:
    """The map the first dense stage reads (through a flatten): its H x W is the kernel."""
    source = node.inputs[0]
    graph = compiled.graph
    if source not in {i.name for i in graph.inputs}:
        before = graph.node(source)
        if REGISTRY[before.op].on_maps is not None and not _stage(before):  # a flatten
            source = before.inputs[0]
    shape = _shape(compiled, source)
    if len(shape) != 3:
        raise refusal(
            compiled,
            f"the dense stage '{node.name}' reads a vector of {'x'.join(map(str, shape))}, "
            "not C x H x W feature maps: there is no window to slide",
        )
    return (int(shape[1]), int(shape[2]))


def _shape(compiled: Compiled, name: str) -> Shape:
    inputs = {i.name: i.shape for i in compiled.graph.inputs}
    return inputs[name] if name in inputs else compiled.inferred.layer(name).shape


def _check_window(compiled: Compiled, node: Node) -> None:
    """A sliding layer converts without padding, ceil mode, or pooling the whole map."""
    params = node.params
    where = f"'{node.name}' ({node.op})"
    if isinstance(params, PoolParams):
        if not isinstance(params.kernel, tuple) or params.output_size() is not None:
            raise refusal(
                compiled,
                f"{where} pools the whole map (or to a fixed size): in the FCN it would pool "
                "the whole image, not one window",
                hint="pool with a window (e.g. `avgpool 4x4`) so that positions stay apart",
            )
        if params.ceil:
            raise refusal(compiled, f"{where} rounds up (ceil=true): its last window is partial")
    pads = getattr(params, "pads", None)
    if pads is not None and any(p for axis in pads() for p in axis):
        raise refusal(
            compiled,
            f"{where} pads its input: it sees zeros at a window's edge, but real "
            "neighbours in the whole image, so the FCN would not equal the sliding window",
            hint="train the window classifier without padding (pad=0, the default)",
        )
