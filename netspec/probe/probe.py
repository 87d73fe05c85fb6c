"""`open_probe(target)`: a run, a spec or an ONNX file, as a `Probe` that runs every layer."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import (
    InputInfo,
    ModelInfo,
    OutputInfo,
    class_scores,
    embedded_reader,
    from_props,
)
from netspec.compiler import Compiled, analyze, compile
from netspec.diagnostics import SpecError, close_matches
from netspec.errors import InputError, MetadataError, ModelError, UsageError
from netspec.export.metadata import default_labels
from netspec.export.onnx_export import input_infos
from netspec.kinds import output_infos
from netspec.limits import Limits
from netspec.probe.views import LayerView, layer_views
from netspec.runtime.inputs import _from_unit
from netspec.text import fmt_shape

if TYPE_CHECKING:
    from netspec.train.opening import KeptRun

FloatArray = npt.NDArray[np.float32]
Runner = Callable[[FloatArray], dict[str, FloatArray]]
# The most memory showing a network may take, estimated from the compiler's counts when
# the network is opened, before anything is allocated (docs/limits.md): its weights three
# times (the module, the float64 twin that measures receptive fields, a copy) and one
# sample's layer outputs `SAMPLE_COPIES` times (the runtime's tensors and their arrays,
# the twin's float64 forward and backward, the input resized). Batches of several samples
# (occlusion, top activations, the page's gallery) keep their outputs within a quarter.
MAX_MEMORY = 4 << 30
SAMPLE_COPIES = 10


class Probe:
    """A network, ready to show what each of its layers computes.

    `layers` are the compiler's facts of every layer, in network order; `run` returns every
    layer's output for a batch the network takes; `prepare` turns a picture into one.
    """

    def __init__(
        self,
        compiled: Compiled,
        inputs: tuple[InputInfo, ...],
        output: OutputInfo,
        labels: tuple[str, ...] | None,
        runner: Runner,
        backend: str,
        source: Path,
    ) -> None:
        self.compiled = compiled
        self.input = replace(inputs[0], shape=_bound(compiled))
        self.layers: tuple[LayerView, ...] = layer_views(compiled)
        self._by_name = {view.name: view for view in self.layers}
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self.input.shape)
        self.output = output
        self.output_layer = compiled.graph.outputs[0]
        self.classes: tuple[str, ...] | None = None
        if output.scores:  # as many classes as the network's output has values
            view = self._by_name.get(self.output_layer)
            shape = view.shape if view is not None else output.shape or ()
            width = math.prod(d for d in shape if isinstance(d, int))
            width = 2 if output.kind == "sigmoid" and width == 1 else width  # (1 - p, p)
            self.classes = labels or tuple(str(k) for k in range(width))
        self.backend = backend
        self.source = source
        self._runner = runner

    @property
    def name(self) -> str:
        return self.compiled.name

    def layer(self, name: str) -> LayerView:
        """The layer called `name`; a UsageError naming the nearest ones when there is none."""
        view = self._by_name.get(name)
        if view is None:
            near = close_matches(name, self._by_name, 3)
            raise UsageError(
                f"no layer '{name}' in network '{self.name}'",
                hint=f"did you mean {', '.join(repr(n) for n in near)}?"
                if near
                else f"its layers: {', '.join(list(self._by_name)[:12])}"
                + (", ..." if len(self._by_name) > 12 else ""),
            )
        return view

    def batch_limit(self, most: int) -> int:
        """How many samples one `run` may take, at most ``most``: as many as keep every
        layer's outputs within `MAX_MEMORY`."""
        one = 2 * _sample_bytes(self.compiled)  # the runtime's outputs and their copies
        return max(1, min(most, MAX_MEMORY // 4 // max(one, 1)))

    def prepare(self, image: npt.NDArray[Any]) -> FloatArray:
        """A picture, H x W or H x W x C (uint8, or floats in [0, 1]), as the network sees
        it: `(1, C, H, W)` float32, fitted to the input's size and channels as `netspec run`
        fits an image file (padded when it fits evenly, else resized), then normalized."""
        if len(self.input_shape) != 3:
            raise InputError(
                f"network '{self.name}' takes {fmt_shape(self.input_shape)}, not an image"
            )
        pixels = _unit_pixels(np.asarray(image))
        chw = pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)
        return _from_unit(chw[None], self.input, Path("image"), False, lambda _: None)

    def run(self, x: npt.NDArray[Any]) -> dict[str, FloatArray]:
        """Every layer's output for the batch `x` `(N, *input_shape)`, batch first, by layer
        name in network order (the last layer's under its own name). A network of several
        inputs gets `x` on each."""
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim != len(self.input_shape) + 1 or len(x) == 0:
            raise InputError(
                f"expected a batch of {fmt_shape(self.input_shape)} floats, "
                f"got {x.dtype} {fmt_shape(x.shape)}"
            )
        if tuple(x.shape[1:]) != self.input_shape:
            raise InputError(
                f"network '{self.name}' takes {fmt_shape(self.input_shape)} per sample, "
                f"got {fmt_shape(x.shape[1:])}"
            )
        if not np.isfinite(x).all():
            raise InputError("the input holds NaN or infinite values")
        return self._runner(x.astype(np.float32, copy=False))

    def kernels(self, name: str) -> FloatArray | None:
        """The kernels of convolution `name` as `(out, in, kh, kw)`, from the trained or
        seeded weights; None for a layer without one kernel tensor."""
        self.layer(name)
        kernels = getattr(self._runner, "kernels", None)
        return None if kernels is None else kernels(name)

    def probabilities(self, outputs: Mapping[str, FloatArray]) -> FloatArray | None:
        """Class probabilities per sample from `run`'s outputs, when the output is scores."""
        if not self.output.scores:
            return None
        return class_scores(outputs[self.output_layer], self.output.kind)


def _sample_bytes(compiled: Compiled) -> int:
    """Bytes of every layer's output for one sample as float32 (0 while sizes are
    symbolic: `_bound` refuses those)."""
    return 4 * (compiled.totals.activations or 0)


def check_memory(compiled: Compiled, source: Path) -> None:
    """Refuse, before anything is allocated, a network that would need more than
    `MAX_MEMORY` to show (the estimate above, from the compiler's counts)."""
    weights, sample = 3 * 4 * compiled.totals.params, SAMPLE_COPIES * _sample_bytes(compiled)
    if weights + sample > MAX_MEMORY:
        raise UsageError(
            f"{source}: network '{compiled.name}' would need about {_mib(weights + sample)} "
            f"to show ({_mib(_sample_bytes(compiled))} of layer outputs per sample, "
            f"{_mib(4 * compiled.totals.params)} of weights); `netspec show` and `serve` "
            f"take at most {_mib(MAX_MEMORY)}",
            hint="bind a smaller input (--set H=64 --set W=64 where its sizes are symbolic) "
            "or show a smaller network",
        )


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _bound(compiled: Compiled) -> tuple[int, ...]:
    shape = compiled.graph.inputs[0].shape
    if not all(isinstance(d, int) for d in shape):
        raise UsageError(
            f"network '{compiled.name}' takes {fmt_shape(shape)}: its sizes are not bound",
            hint="bind them, e.g. --set H=64 --set W=64",
        )
    return tuple(int(d) for d in shape)


def _unit_pixels(image: npt.NDArray[Any]) -> FloatArray:
    """H x W or H x W x C (C of 1, 3 or 4: alpha dropped) as floats in [0, 1]."""
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise InputError(
            f"an image must be H x W or H x W x C (C of 1, 3 or 4), got {fmt_shape(image.shape)}"
        )
    if image.size == 0:
        raise InputError(f"an empty image ({fmt_shape(image.shape)})")
    if image.ndim == 3:
        image = image[..., :3] if image.shape[2] == 4 else image
        image = image[..., 0] if image.shape[2] == 1 else image
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255.0)
    if image.dtype.kind != "f":
        raise InputError(f"a {image.dtype} image; expected uint8 pixels or floats in [0, 1]")
    if not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
        raise InputError("a float image must hold values in [0, 1]")
    return image.astype(np.float32)


def _scalar(value: Any) -> Any:
    """`--set` values as the command line reads them: true/false, numbers, else words."""
    if not isinstance(value, str):
        return value
    if value in ("true", "false"):
        return value == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def open_probe(
    target: str | Path, *, overrides: Mapping[str, Any] = {}, threads: int | None = None
) -> Probe:
    """A Probe on `target`: a run directory (its `model.onnx` when it has one and no
    overrides are given, else its spec and weights), a `.net` spec (weights drawn from a
    fixed seed, or only fixed kernels) or an ONNX file netspec wrote. `overrides` bind sizes
    and constants as `--set` does (`{"H": "64"}`); `threads`, the CPU threads its layers
    run on (None: the engine's default). A bad target is a NetspecError."""
    path = Path(target)
    values = {k: _scalar(v) for k, v in overrides.items()}
    if path.is_dir():
        return _open_run(path, values, threads)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory; expected a run, a spec or a .onnx")
    if path.suffix == ".onnx":
        return _open_onnx(path, values, None, threads)
    compiled = compile(path, **values)
    return _torch_probe(compiled, None, path, threads)


def _torch_probe(
    compiled: Compiled, weights: Path | None, source: Path, threads: int | None
) -> Probe:
    from netspec.probe.torch_side import TorchLayers

    output = output_infos(compiled)[0]
    dataset = compiled.train.dataset if compiled.train is not None else None
    labels = default_labels(dataset, output)
    check_memory(compiled, source)
    runner = TorchLayers(compiled, weights, threads)
    return Probe(compiled, input_infos(compiled), output, labels, runner, runner.backend, source)


def _open_run(run: Path, overrides: dict[str, Any], threads: int | None) -> Probe:
    """A run as `netspec eval` opens it (netspec.train.opening: no link out of it, settings
    and every kept spec file checked against their digests), then its `model.onnx` compiled
    from those kept files, or its spec and weights."""
    from netspec.train.opening import open_run, read_run  # imports torch

    kept = read_run(run)
    onnx_file = run / "model.onnx"
    if onnx_file.is_file() and not overrides:
        try:
            return _open_onnx(onnx_file, kept.overrides, kept, threads)
        except (ModelError, SpecError):
            pass  # exported before layers were named, or not this spec: read the weights
    compiled, weights = open_run(run, overrides=overrides)
    return _torch_probe(compiled, weights, run, threads)


def _open_onnx(
    path: Path, overrides: Mapping[str, Any], kept: KeptRun | None, threads: int | None
) -> Probe:
    """The ONNX side: the metadata's spec compiled (its sizes bound as exported) from what
    the file embeds, or for a run's file from the run's kept files, which it must hold; the
    graph run with every layer's tensor an output."""
    from netspec.probe.onnx_side import OnnxLayers, check_outputs, load_model

    model = load_model(path)
    props = {p.key: p.value for p in model.metadata_props}
    try:
        info: ModelInfo = from_props(props, str(path))
    except MetadataError as e:
        raise ModelError(str(e)) from None
    file, texts, holder = str(path), info.sources, path.name
    if kept is not None:
        main = kept.files.main
        texts = {name: text for name, text in kept.files.texts.items() if name != main}
        if kept.files.texts[main] != info.spec or info.sources not in ({}, texts):
            raise ModelError(f"{path}: not exported from the run's spec")
        file, holder = str(kept.main), "the run"
    compiled = _compile_embedded(info, (file, texts, holder), path, {**overrides, **info.sizes})
    want = [tuple(i.shape) for i in info.inputs]
    if [tuple(i.shape) for i in compiled.graph.inputs] != want:
        raise ModelError(f"{path}: its metadata's spec does not compile to the graph's inputs")
    check_outputs(model, compiled, info, path)
    check_memory(compiled, path)
    runner = OnnxLayers(path, model, compiled, info, threads)
    probe = Probe(compiled, info.inputs, info.outputs[0], info.labels, runner, runner.backend, path)
    _check_shapes(probe, path)
    return probe


def _compile_embedded(
    info: ModelInfo,
    source: tuple[str, Mapping[str, str], str],
    path: Path,
    overrides: Mapping[str, Any],
) -> Compiled:
    """The spec an ONNX file carries, compiled within the limits `netspec compile` applies
    to a file (its size first: the metadata may hold up to 16 MiB of it). ``source`` is
    the file it is read as, the text of each file it may `use` (by path relative to that
    file's folder) and what holds them: nothing is read from the disk beside it."""
    limits = Limits()
    size = len(info.spec.encode("utf-8", "surrogatepass"))
    if size > limits.max_file_bytes:
        raise ModelError(
            f"{path}: its metadata's spec is {size:,} bytes; the limit is "
            f"{limits.max_file_bytes:,}, as for a spec file"
        )
    file, texts, holder = source
    return analyze(
        info.spec,
        file=file,
        read=embedded_reader(file, texts, holder),
        limits=limits,
        overrides=overrides,
        network_name=info.network,
    ).compiled()


def _check_shapes(probe: Probe, path: Path) -> None:
    """One run on zeros: every layer's tensor must have the shape the compiler inferred."""
    zeros = np.zeros((1, *probe.input_shape), np.float32)
    try:
        outputs = probe.run(zeros)
    except ValueError as e:  # a reshape to the inferred shape failed
        raise ModelError(f"{path}: a layer's tensor is not the shape its spec says ({e})") from None
    for view in probe.layers:
        if outputs[view.name].shape[1:] != view.shape:
            raise ModelError(
                f"{path}: layer '{view.name}' computes {fmt_shape(outputs[view.name].shape[1:])}, "
                f"its spec says {fmt_shape(view.shape)}"
            )
