"""A trained classifier made fully convolutional (OverFeat: Sermanet et al., 2014).

A convolutional classifier slid over an image computes the same convolutions again for
every window. Written as convolutions all the way, it computes each once: the first dense
stage after a C x H x W map becomes a convolution with an H x W kernel (the same weights,
reshaped), every later dense stage a 1 x 1 convolution, and the input becomes 1 x H x W
for any H, W. Its output is then a map: at each position, the class scores the classifier
gives the window that position saw. `netspec.passes.infer` already knows each layer's
receptive field (size, jump, start), which is exactly what maps a position back to its
window; the file's metadata records it (`netspec.artifact.SlidingWindow`), with the
classes and the window size, so `netspec detect` needs nothing else.

The output holds the classifier's own numbers (logits, or probabilities when the
classifier ends in softmax), recorded as `SlidingWindow.scores`; the detector turns them
into probabilities per position.

Only networks whose every layer before the dense stages looks at a window in the same way
at every position convert: convolutions and pools without padding (a padded layer sees
zeros at a window's edge but real neighbours in the whole image), and operations on each
position alone. Anything else is refused with the reason: no dense stage, global or
adaptive pooling, a dense stage over a vector, locally connected layers, normalizations
over the whole map, merges.

The conversion is a transformation of the compiled graph (`fully_convolutional`, no
torch); `export_fcn` lowers it, copies the classifier's weights in, writes the ONNX file
atomically, and only after checking on an image that the FCN's score at every position
equals the classifier run on that window (`check_windows`, within `ATOL`).
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

import netspec
from netspec.artifact import (
    InputInfo,
    ModelInfo,
    OutputInfo,
    SlidingWindow,
    from_props,
)
from netspec.compiler import Compiled
from netspec.diagnostics import SpecError
from netspec.errors import ExportError, MetadataError, NetspecError
from netspec.export.metadata import default_labels
from netspec.export.onnx_export import input_infos
from netspec.fileio import atomic_path
from netspec.ir import Dim, Graph, GraphInput, Node, Shape
from netspec.kinds import output_infos
from netspec.ops import RF
from netspec.ops.pointwise import DenseParams, NoParams
from netspec.ops.spatial import ConvParams, PoolParams
from netspec.passes.infer import infer_graph
from netspec.text import first_line, fmt_shape

if TYPE_CHECKING:
    import onnx
    import torch

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]
Scores = Literal["logits", "probabilities"]

ATOL = 1e-5  # the FCN's scores against the classifier's on each window
BACKGROUND = "background"  # the label of the class that means "no object here"
SIZE = ("H", "W")  # the FCN's input size names (and its output's: OUT_SIZE)
OUT_SIZE = ("rows", "cols")

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

    def sliding_window(self, background: int) -> SlidingWindow:
        rf = self.rf
        return SlidingWindow(self.window, rf.size, rf.jump, rf.start, self.scores, background)


def _refusal(compiled: Compiled, what: str, hint: str | None = None) -> ExportError:
    return ExportError(f"{compiled.name}: cannot make it fully convolutional: {what}", hint=hint)


def fully_convolutional(classifier: Compiled, size: tuple[Dim, Dim] = SIZE) -> FullyConvolutional:
    """The classifier's graph with each dense stage a convolution, each flatten an identity,
    and its input C x `size`; ExportError naming the layer when it cannot convert."""
    graph = classifier.graph
    _check_chain(classifier)
    image = graph.inputs[0]
    if len(image.shape) != 3 or not all(isinstance(d, int) for d in image.shape):
        raise _refusal(
            classifier,
            f"its input '{image.name}' is {'x'.join(map(str, image.shape))}; a window "
            "classifier takes fixed C x H x W images",
        )
    scores = output_infos(classifier)[0].kind
    if scores not in ("logits", "probabilities"):
        raise _refusal(
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
        raise _refusal(
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
        raise _refusal(
            compiled,
            f"it has {len(graph.inputs)} inputs and {len(graph.outputs)} outputs; a window "
            "classifier has one of each",
        )
    for node in graph.nodes:
        if len(node.inputs) != 1:
            raise _refusal(
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
    raise _refusal(compiled, f"'{node.name}' ({node.op}): {why}")


def _dense_window(compiled: Compiled, node: Node) -> tuple[int, int]:
    """The map the first dense stage reads (through a flatten): its H x W is the kernel."""
    source = node.inputs[0]
    graph = compiled.graph
    if source not in {i.name for i in graph.inputs} and graph.node(source).op == "flatten":
        source = graph.node(source).inputs[0]
    shape = _shape(compiled, source)
    if len(shape) != 3:
        raise _refusal(
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
            raise _refusal(
                compiled,
                f"{where} pools the whole map (or to a fixed size): in the FCN it would pool "
                "the whole image, not one window",
                hint="pool with a window (e.g. `avgpool 4x4`) so that positions stay apart",
            )
        if params.ceil:
            raise _refusal(compiled, f"{where} rounds up (ceil=true): its last window is partial")
    pads = getattr(params, "pads", None)
    if pads is not None and any(p for axis in pads() for p in axis):
        raise _refusal(
            compiled,
            f"{where} pads its input: it sees zeros at a window's edge, but real "
            "neighbours in the whole image, so the FCN would not equal the sliding window",
            hint="train the window classifier without padding (pad=0, the default)",
        )


# ---- PyTorch: the FCN's module with the classifier's weights ------------------------


def fcn_module(fcn: FullyConvolutional, classifier: torch.nn.Module) -> torch.nn.Module:
    """The FCN as a module (eval mode) holding `classifier`'s weights: each dense stage's
    (units, C*H*W) matrix reshaped to the (units, C, H, W) kernel it is, everything else
    as it is. The state's names are the classifier's: the layers keep their names."""
    from netspec.lower import to_torch

    module = to_torch(fcn.compiled)
    target = module.state_dict()
    state = classifier.state_dict()
    if state.keys() != target.keys():
        raise ExportError(
            f"{fcn.classifier.name}: the weights do not fit the network "
            f"(missing: {', '.join(sorted(target.keys() - state.keys())) or 'none'})"
        )
    module.load_state_dict({k: state[k].reshape(target[k].shape) for k in target})
    return module.eval()


@dataclass(frozen=True)
class WindowCheck:
    """The FCN on one image against the classifier on each of its windows."""

    positions: int
    max_abs: float
    ok: bool

    def summary(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"the FCN against the classifier on each of {self.positions} windows: max abs "
            f"err {self.max_abs:.3g} (atol {ATOL:g}): {verdict}"
        )


def windows(image: FloatArray, window: tuple[int, int], jump: tuple[int, int]) -> FloatArray:
    """Every window of `image` (1, C, H, W) that fits, at the stride `jump`: (rows, cols, C,
    h, w), the window at (i, j) starting at pixel (i, j) * jump."""
    from numpy.lib.stride_tricks import sliding_window_view

    views = sliding_window_view(image[0], window, axis=(1, 2))[:, :: jump[0], :: jump[1]]
    return np.ascontiguousarray(views.transpose(1, 2, 0, 3, 4))


def check_windows(
    fcn: FullyConvolutional, classifier: torch.nn.Module, scores_map: FloatArray, image: FloatArray
) -> WindowCheck:
    """Compare `scores_map` (1, K, rows, cols), the FCN's output on `image` (1, C, H, W), with
    the classifier's output on each window of `image` that fits (the map may have more
    positions at its far edges, when the classifier's last layers drop a row of a window
    that does not fit: those are not windows)."""
    import torch

    crops = windows(image, fcn.window, fcn.jump)
    rows, cols = crops.shape[:2]
    with torch.no_grad():
        want = classifier(torch.from_numpy(crops.reshape(rows * cols, *crops.shape[2:]))).numpy()
    if scores_map.shape[2] < rows or scores_map.shape[3] < cols:
        return WindowCheck(rows * cols, math.inf, False)
    got = scores_map[0, :, :rows, :cols].reshape(scores_map.shape[1], -1).T
    error = float(np.abs(got - want).max()) if want.size else 0.0
    return WindowCheck(rows * cols, error, bool(np.isfinite(got).all() and error <= ATOL))


def check_image(fcn: FullyConvolutional, seed: int = 0) -> FloatArray:
    """A model-ready random image a few windows wide, its size not a whole number of
    strides (so that the last row and column of windows are checked at the edge)."""
    (wh, ww), (jh, jw) = fcn.window, fcn.jump
    shape = (1, int(fcn.classifier.graph.inputs[0].shape[0]), wh + 5 * jh + jh // 2, ww + 7 * jw)
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# ---- the ONNX file ----------------------------------------------------------------------


@dataclass(frozen=True)
class FcnReport:
    """What `export_fcn` wrote and how it was checked."""

    path: Path
    window: SlidingWindow
    converted: tuple[str, ...]
    checks: tuple[WindowCheck, ...]


def export_fcn(
    classifier: Compiled,
    path: str | PathLike[str],
    weights: torch.nn.Module | None = None,
    *,
    labels: Sequence[str] | None = None,
    images: Sequence[FloatArray] = (),
    opset: int = 17,
    log: Log = print,
) -> FcnReport:
    """Write `classifier` (with `weights`, else freshly initialized) to `path` as its fully
    convolutional network, checked on a random image and on each of `images` (model-ready
    (1, C, H, W) arrays) against the classifier on every window. ExportError, with `path`
    untouched, on any failure."""
    import torch

    from netspec.lower import to_torch

    path = Path(path)
    fcn = fully_convolutional(classifier)
    names = _labels(classifier, labels)
    source = weights if weights is not None else to_torch(classifier)
    if weights is None:
        log(f"converting {classifier.name} with untrained (freshly initialized) weights")
    original = _prepared(source)
    module = fcn_module(fcn, original)
    info = _model_info(fcn, names, path)
    log(
        f"dense stages as convolutions: {', '.join(fcn.converted)}; window "
        f"{fcn.window[0]}x{fcn.window[1]}, stride {fcn.jump[0]}x{fcn.jump[1]}"
    )
    with torch.no_grad():
        model = _trace(fcn, module, opset, info)
    checks: list[WindowCheck] = []
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
        _check_onnx(tmp, path)
        for image in [check_image(fcn), *images]:
            check = check_windows(fcn, original, _run_file(tmp, image, path), image)
            log(check.summary())
            if not check.ok:
                raise ExportError(f"{path}: {check.summary()}")
            checks.append(check)
    log(f"wrote {path} (fully convolutional, input {fmt_shape(info.inputs[0].shape)})")
    assert info.sliding_window is not None
    return FcnReport(path, info.sliding_window, fcn.converted, tuple(checks))


def _prepared(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU fp32 copy in eval mode, so the caller's module is not touched."""
    import copy

    return copy.deepcopy(module).cpu().float().eval()


def _labels(classifier: Compiled, given: Sequence[str] | None) -> tuple[str, ...]:
    """The class names (given, else the training set's), one of them `background`."""
    info = output_infos(classifier)[0]
    dataset = classifier.train.dataset if classifier.train is not None else None
    names = tuple(given) if given is not None else default_labels(dataset, info)
    classes = math.prod(int(d) for d in info.shape or (0,))
    if names is None:
        raise _refusal(
            classifier,
            f"its {classes} classes have no names, so none is known to be '{BACKGROUND}'",
            hint=f"name them with --labels, e.g. --labels 0,1,2,3,4,5,6,7,8,9,{BACKGROUND}",
        )
    if len(names) != classes:
        raise _refusal(classifier, f"{len(names)} labels for {classes} classes")
    if BACKGROUND not in names:
        raise _refusal(
            classifier,
            f"no class is '{BACKGROUND}' (labels: {', '.join(names)}); a sliding window "
            "needs one that means 'no object here'",
        )
    return names


def _model_info(fcn: FullyConvolutional, labels: tuple[str, ...], path: Path) -> ModelInfo:
    """The metadata to write, checked as `netspec detect` will read it."""
    classifier = fcn.classifier
    given = input_infos(classifier)[0]
    output = output_infos(classifier)[0]
    info = ModelInfo(
        network=classifier.name,
        spec=classifier.source,
        version=netspec.__version__,
        inputs=(InputInfo(given.name, (given.shape[0], *SIZE), given.mean, given.std),),
        outputs=(OutputInfo(output.name, "class_map", (len(labels), *OUT_SIZE)),),
        labels=labels,
        sliding_window=fcn.sliding_window(labels.index(BACKGROUND)),
    )
    try:
        from_props(info.to_props(), str(path))
    except MetadataError as e:
        raise ExportError(f"cannot write this metadata: {e}") from None
    return info


def _trace(
    fcn: FullyConvolutional, module: torch.nn.Module, opset: int, info: ModelInfo
) -> onnx.ModelProto:
    """TorchScript export on an image two windows square; batch, H and W dynamic."""
    import onnx
    import torch

    (wh, ww), name, out = fcn.window, info.inputs[0].name, info.outputs[0].name
    channels = int(info.inputs[0].shape[0])
    example = torch.zeros(1, channels, 2 * wh, 2 * ww)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                (example,),
                buffer,  # type: ignore[arg-type]  # a file object works; the hint says path
                dynamo=False,
                opset_version=opset,
                input_names=[name],
                output_names=[out],
                dynamic_axes={name: {0: "batch", 2: SIZE[0], 3: SIZE[1]}}
                | {out: {0: "batch", 2: OUT_SIZE[0], 3: OUT_SIZE[1]}},
            )
    except Exception as e:  # the exporter raises many types; report it as an export failure
        raise ExportError(f"{fcn.classifier.name}: PyTorch could not export the FCN: {e}") from None
    model = onnx.load_from_string(buffer.getvalue())
    del model.metadata_props[:]
    for key, value in info.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "netspec", info.version
    model.graph.name = f"{info.network}_fcn"
    return model


def _check_onnx(tmp: Path, path: Path) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(tmp), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"{path}: the converted graph is not valid ONNX: {e}") from None


def _run_file(tmp: Path, image: FloatArray, path: Path) -> FloatArray:
    """The written file on ONNX Runtime (CPU) on one image."""
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
        out: Any = session.run(None, {session.get_inputs()[0].name: image})[0]
    except NetspecError:
        raise
    except Exception as e:  # ONNX Runtime's own error types derive from Exception only
        raise ExportError(f"{path}: ONNX Runtime cannot run it: {first_line(e)}") from None
    return np.asarray(out, np.float32)
