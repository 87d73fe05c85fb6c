"""The classifier's graph made fully convolutional, without torch: each dense stage a
convolution with the kernel it already is (the first one's kernel is the H x W of the map
it reads, each later one's 1 x 1), each flatten an identity, the input C x H x W for any
H, W; then inferred, which gives the output's receptive field (size, jump, start): what
maps a position back to its window. netspec.export.fcn lowers and writes it.

A layer converts when it looks at a window the same way at every position: convolutions
and pools without padding or ceil mode (a padded layer sees zeros at a window's edge, but
real neighbours in the whole image), and operations on each position alone (`POINTWISE`).
Anything else is refused with the reason (`REFUSED`), as are networks with no dense stage,
with merges, or whose first dense stage reads a vector.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from netspec.artifact import SlidingWindow
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.errors import ExportError
from netspec.ir import Dim, Graph, GraphInput, Node, Shape
from netspec.kinds import output_infos
from netspec.ops import RF
from netspec.ops.pointwise import DenseParams, NoParams
from netspec.ops.spatial import ConvParams, PoolParams
from netspec.passes.infer import infer_graph

Scores = Literal["logits", "probabilities"]
SIZE = ("H", "W")  # the FCN's input size names

# Operations that act on each position alone (channels may mix): the same in the FCN.
POINTWISE = frozenset(
    {
        "batchnorm",
        "channel_shuffle",
        "dropout",
        "elu",
        "gelu",
        "hardsigmoid",
        "hardswish",
        "hardtanh",
        "identity",
        "leaky_relu",
        "log_softmax",
        "lrn",
        "mish",
        "prelu",
        "relu",
        "relu6",
        "scale",
        "scaled_tanh",
        "sigmoid",
        "silu",
        "softmax",
        "softplus",
        "tanh",
    }
)
# Operations that slide a window with the same weights everywhere (without padding).
SLIDING = frozenset({"conv", "maxpool", "avgpool", "lppool", "subsample"})
# Why the others cannot slide, where there is more to say than "no sliding form".
REFUSED = {
    "local": "a locally connected layer has its own kernel at each position of the window",
    "layernorm": "it normalizes over the whole window, so a window's result depends on it all",
    "groupnorm": "it normalizes over the whole window, so a window's result depends on it all",
    "instancenorm": "it normalizes over the whole window, so a window's result depends on it all",
    "rbf": "the RBF output gives distances, not class scores a detector can threshold",
}


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
        rf = self.rf
        return SlidingWindow(
            self.window, rf.size, rf.jump, rf.start, self.scores, background, boxes
        )


def refusal(compiled: Compiled, what: str, hint: str | None = None) -> ExportError:
    return ExportError(f"{compiled.name}: cannot make it fully convolutional: {what}", hint=hint)


def fully_convolutional(classifier: Compiled, size: tuple[Dim, Dim] = SIZE) -> FullyConvolutional:
    """The classifier's graph with each dense stage a convolution, each flatten an identity,
    and its input C x `size`; ExportError naming the layer when it cannot convert."""
    graph = classifier.graph
    _check_chain(classifier)
    image = graph.inputs[0]
    if len(image.shape) != 3 or not all(isinstance(d, int) for d in image.shape):
        raise refusal(
            classifier,
            f"its input '{image.name}' is {'x'.join(map(str, image.shape))}; a window "
            "classifier takes fixed C x H x W images",
        )
    scores = output_infos(classifier)[0].kind
    if scores not in ("logits", "probabilities"):
        raise refusal(
            classifier,
            f"its output is {scores}; a detector needs class scores (logits or softmax)",
        )
    nodes: list[Node] = []
    converted: list[str] = []
    for node in graph.nodes:
        nodes.append(_convert(classifier, node, bool(converted)))
        if node.op == "dense":
            converted.append(node.name)
    if not converted:
        raise refusal(
            classifier,
            "it has no dense stage (nothing to turn into a convolution)",
            hint="a network of convolutions alone is fully convolutional already: give its "
            "input symbolic sizes (`image: 1xHxW`) and export it",
        )
    channels = image.shape[0]
    fcn = Graph(
        graph.name,
        (GraphInput(image.name, (channels, *size), image.span),),
        tuple(nodes),
        graph.outputs,
        graph.span,
    )
    try:
        inferred = infer_graph(fcn)
    except SpecError as e:  # a concrete `size` smaller than the window
        raise ExportError(f"{classifier.name}: the fully convolutional network: {e}") from None
    window = (int(image.shape[1]), int(image.shape[2]))
    compiled = Compiled(classifier.program, fcn, inferred, None, [])
    return FullyConvolutional(classifier, compiled, window, scores, tuple(converted))


def _check_chain(compiled: Compiled) -> None:
    """One input, one output, each layer reading the one before it."""
    graph = compiled.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise refusal(
            compiled,
            f"it has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; a window "
            "classifier has one of each",
        )
    for node in graph.nodes:
        if len(node.inputs) != 1:
            raise refusal(
                compiled,
                f"'{node.name}' ({node.op}) merges {len(node.inputs)} tensors; netspec "
                "converts a chain of layers",
            )


def _convert(compiled: Compiled, node: Node, after_dense: bool) -> Node:
    """The node as the FCN has it: a dense stage as a convolution, a flatten as identity."""
    if node.op == "dense":
        assert isinstance(node.params, DenseParams)
        kernel = (1, 1) if after_dense else _dense_window(compiled, node)
        params = ConvParams(
            channels=node.params.units, kernel=kernel, bias=node.params.bias, init=node.params.init
        )
        return Node(node.name, "conv", params, node.inputs, node.span, node.origin, node.shares)
    if node.op == "flatten":
        return Node(node.name, "identity", NoParams(), node.inputs, node.span, node.origin)
    if node.op in POINTWISE:
        return node
    if node.op in SLIDING and not after_dense:
        _check_window(compiled, node)
        return node
    why = REFUSED.get(node.op, f"'{node.op}' has no sliding-window form")
    raise refusal(compiled, f"'{node.name}' ({node.op}): {why}")


def _dense_window(compiled: Compiled, node: Node) -> tuple[int, int]:
    """The map the first dense stage reads (through a flatten): its H x W is the kernel."""
    source = node.inputs[0]
    graph = compiled.graph
    if source not in {i.name for i in graph.inputs} and graph.node(source).op == "flatten":
        source = graph.node(source).inputs[0]
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
