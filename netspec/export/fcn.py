"""A trained classifier made fully convolutional (OverFeat: Sermanet et al., 2014).

A convolutional classifier slid over an image computes the same convolutions again for
every window. Written as convolutions all the way, it computes each once: the first dense
stage after a C x H x W map becomes a convolution with an H x W kernel (the same weights,
reshaped), every later dense stage a 1 x 1 convolution, and the input becomes 1 x H x W
for any H, W. Its output is then a map: at each position, the class scores the classifier
gives the window that position saw. `netspec.passes.infer` already knows each layer's
receptive field (size, jump, start), which is exactly what maps a position back to its
window; the file's metadata records it as its `decoding` by the runtime's `sliding_window`
decoder (`netspec.runtime.decoders.sliding_window.SlidingWindow`), with the classes and the
window size, so `netspec detect` needs nothing else.

The output holds the classifier's own numbers (logits, or probabilities when the
classifier ends in softmax), recorded as `SlidingWindow.scores`; the detector turns them
into probabilities per position.

What converts, and what is refused with its reason, is netspec.export.fcn_graph's: the
conversion is a transformation of the compiled graph (`fully_convolutional`, no torch).
`export_fcn` lowers it, copies the classifier's weights in, writes the ONNX file
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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

import netspec
from netspec.artifact import InputInfo, ModelInfo, OutputInfo, relative_sources
from netspec.compiler import Compiled
from netspec.errors import ExportError, NetspecError
from netspec.export.detection import readable
from netspec.export.fcn_graph import SIZE, FullyConvolutional, fully_convolutional, refusal
from netspec.export.metadata import default_labels
from netspec.export.onnx_export import input_infos
from netspec.fileio import atomic_path, output_target
from netspec.kinds import output_infos
from netspec.runtime.decoders.sliding_window import SlidingWindow
from netspec.text import first_line, fmt_shape

if TYPE_CHECKING:
    import onnx
    import torch

__all__ = [
    "ATOL",
    "FcnReport",
    "FullyConvolutional",
    "WindowCheck",
    "check_windows",
    "export_fcn",
    "fcn_module",
    "fully_convolutional",
    "ink_boxes",
    "windows",
]

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]

# the FCN's scores against the classifier's on each window: within ATOL of the scores'
# scale (their largest magnitude, or 1 when smaller), as float32 sums in another order allow
ATOL = 1e-5
BACKGROUND = "background"  # the label of the class that means "no object here"
OUT_SIZE = ("rows", "cols")  # the output map's size names


def ink_boxes(
    images: npt.NDArray[np.uint8],
    labels: npt.NDArray[np.int64],
    names: Sequence[str],
    share: float,
    ink: float,
) -> tuple[tuple[float, float], ...]:
    """Each class's box shape (H, W) in its windows, as shares of the window's side: the
    median over the class's examples of its tight ink box (pixels of at least `ink` of full
    scale), scaled so that its larger side spans `share` of the window (how
    netspec.data.windows frames a digit: its larger side is 20 of the window's 28). The
    background's, and that of a class without examples, is a square of `share`."""
    mask = np.asarray(images >= ink * 255)
    rows, cols = np.asarray(mask.any(axis=2)), np.asarray(mask.any(axis=1))  # (N, H), (N, W)
    heights = _extent(rows).astype(np.float64)
    widths = _extent(cols).astype(np.float64)
    larger = np.maximum(np.maximum(heights, widths), 1)
    shapes = []
    for c, name in enumerate(names):
        mine = (labels == c) & (heights > 0)
        if name == BACKGROUND or not mine.any():
            shapes.append((share, share))
            continue
        h = float(np.median(heights[mine] / larger[mine]))
        w = float(np.median(widths[mine] / larger[mine]))
        shapes.append((round(h * share, 4), round(w * share, 4)))
    return tuple(shapes)


def _extent(occupied: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Per row of `occupied` (N, L): the span from its first True to its last (0 if none)."""
    first = occupied.argmax(axis=1)
    last = occupied.shape[1] - 1 - occupied[:, ::-1].argmax(axis=1)
    span: npt.NDArray[np.int64] = np.where(occupied.any(axis=1), last - first + 1, 0)
    return span


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
    scale: float  # the largest score's magnitude (at least 1): the tolerance is ATOL of it
    ok: bool

    def summary(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"the FCN against the classifier on each of {self.positions} windows: max abs "
            f"err {self.max_abs:.3g} (allowed {ATOL:g} x {self.scale:.3g}): {verdict}"
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
        return WindowCheck(rows * cols, math.inf, 1.0, False)
    got = scores_map[0, :, :rows, :cols].reshape(scores_map.shape[1], -1).T
    error = float(np.abs(got - want).max()) if want.size else 0.0
    scale = max(1.0, float(np.abs(want).max()) if want.size else 1.0)
    ok = bool(np.isfinite(got).all() and np.isfinite(want).all() and error <= ATOL * scale)
    return WindowCheck(rows * cols, error, scale, ok)


def check_image(fcn: FullyConvolutional, given: InputInfo, seed: int = 0) -> FloatArray:
    """A random image of pixels in [0, 1], made model-ready as ``given`` says, a few
    windows wide, its size not a whole number of strides (so that the last row and column
    of windows are checked at the edge)."""
    (wh, ww), (jh, jw) = fcn.window, fcn.jump
    shape = (1, int(fcn.classifier.graph.inputs[0].shape[0]), wh + 5 * jh + jh // 2, ww + 7 * jw)
    pixels = np.random.default_rng(seed).random(shape).astype(np.float32)
    return given.normalize(pixels)


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
    boxes: tuple[tuple[float, float], ...] | None = None,
    images: Sequence[FloatArray] = (),
    opset: int = 17,
    log: Log = print,
) -> FcnReport:
    """Write `classifier` (with `weights`, else freshly initialized) to `path` as its fully
    convolutional network, checked on a random image and on each of `images` (model-ready
    (1, C, H, W) arrays) against the classifier on every window. `boxes` are the classes'
    box shapes in a window (`ink_boxes`; default: the whole receptive field). ExportError,
    with `path` untouched, on any failure."""
    import torch

    from netspec.lower import to_torch

    path = Path(path)
    output_target(path)  # a directory, a socket, a dangling link: refused before the work
    fcn = fully_convolutional(classifier)
    names = _labels(classifier, labels)
    source = weights if weights is not None else to_torch(classifier)
    if weights is None:
        log(f"converting {classifier.name} with untrained (freshly initialized) weights")
    original = _prepared(source)
    module = fcn_module(fcn, original)
    window = fcn.sliding_window(names.index(BACKGROUND), boxes)
    info = _model_info(fcn, names, window, path)
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
        given = info.inputs[0]
        for image in [check_image(fcn, given), *images]:
            check = check_windows(fcn, original, _run_file(tmp, image, path), image)
            log(check.summary())
            if not check.ok:
                raise ExportError(f"{path}: {check.summary()}")
            checks.append(check)
    log(f"wrote {path} (fully convolutional, input {fmt_shape(info.inputs[0].shape)})")
    return FcnReport(path, window, fcn.converted, tuple(checks))


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
        raise refusal(
            classifier,
            f"its {classes} classes have no names, so none is known to be '{BACKGROUND}'",
            hint=f"name them with --labels, e.g. --labels 0,1,2,3,4,5,6,7,8,9,{BACKGROUND}",
        )
    if len(names) != classes:
        raise refusal(classifier, f"{len(names)} labels for {classes} classes")
    if BACKGROUND not in names:
        raise refusal(
            classifier,
            f"no class is '{BACKGROUND}' (labels: {', '.join(names)}); a sliding window "
            "needs one that means 'no object here'",
        )
    return names


def _model_info(
    fcn: FullyConvolutional,
    labels: tuple[str, ...],
    window: SlidingWindow,
    path: Path,
) -> ModelInfo:
    """The metadata to write, checked as `netspec detect` will read it."""
    if window.boxes is not None and len(window.boxes) != len(labels):
        raise ExportError(f"{len(window.boxes)} box shapes for {len(labels)} classes")
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
        decoding=window.as_decoding(),
        sources=relative_sources(classifier.program.main_file, classifier.program.sources.texts),
    )
    readable(info, path)
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
