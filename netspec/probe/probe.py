"""`open_probe(target)`: a run, a spec or an ONNX file, as a `Probe` that runs every layer."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import InputInfo, ModelInfo, OutputInfo, class_scores, from_props
from netspec.compiler import Compiled, compile, compile_text
from netspec.errors import InputError, MetadataError, ModelError, UsageError
from netspec.export.metadata import default_labels
from netspec.export.onnx_export import input_infos
from netspec.fileio import read_capped
from netspec.kinds import output_infos
from netspec.probe.views import LayerView, layer_views
from netspec.runtime.inputs import _from_unit
from netspec.text import fmt_shape

FloatArray = npt.NDArray[np.float32]
Runner = Callable[[FloatArray], dict[str, FloatArray]]
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit on one file


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
        self.input = InputInfo(inputs[0].name, _bound(compiled), inputs[0].mean, inputs[0].std)
        self.layers: tuple[LayerView, ...] = layer_views(compiled)
        self.input_shape: tuple[int, ...] = tuple(int(d) for d in self.input.shape)
        self.output = output
        self.output_layer = compiled.graph.outputs[0]
        self.classes: tuple[str, ...] | None = None
        if output.scores:
            width = math.prod(d for d in output.shape or () if isinstance(d, int))
            width = 2 if output.kind == "sigmoid" and width == 1 else width  # (1 - p, p)
            self.classes = labels or tuple(str(k) for k in range(width))
        self.backend = backend
        self.source = source
        self._runner = runner
        self._by_name = {view.name: view for view in self.layers}

    @property
    def name(self) -> str:
        return self.compiled.name

    def layer(self, name: str) -> LayerView:
        """The layer called `name`; a UsageError naming the nearest ones when there is none."""
        view = self._by_name.get(name)
        if view is None:
            near = difflib.get_close_matches(name, list(self._by_name), n=3)
            raise UsageError(
                f"no layer '{name}' in network '{self.name}'",
                hint=f"did you mean {', '.join(repr(n) for n in near)}?"
                if near
                else f"its layers: {', '.join(list(self._by_name)[:12])}"
                + (", ..." if len(self._by_name) > 12 else ""),
            )
        return view

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


def open_probe(target: str | Path, *, overrides: Mapping[str, Any] = {}) -> Probe:
    """A Probe on `target`: a run directory (its `model.onnx` when it has one and no
    overrides are given, else its spec and weights), a `.net` spec (weights drawn from a
    fixed seed, or only fixed kernels) or an ONNX file netspec wrote. `overrides` bind sizes
    and constants as `--set` does (`{"H": "64"}`). A bad target is a NetspecError."""
    path = Path(target)
    values = {k: _scalar(v) for k, v in overrides.items()}
    if path.is_dir():
        return _open_run(path, values)
    if not path.exists():
        raise UsageError(f"{path}: no such file or directory; expected a run, a spec or a .onnx")
    if path.suffix == ".onnx":
        return _open_onnx(path, values, None)
    compiled = compile(path, **values)
    return _torch_probe(compiled, None, path)


def _torch_probe(compiled: Compiled, weights: Path | None, source: Path) -> Probe:
    from netspec.probe.torch_side import TorchLayers

    output = output_infos(compiled)[0]
    dataset = compiled.train.dataset if compiled.train is not None else None
    labels = default_labels(dataset, output)
    runner = TorchLayers(compiled, weights)
    return Probe(compiled, input_infos(compiled), output, labels, runner, runner.backend, source)


def _run_settings(run: Path) -> tuple[dict[str, Any], Path | None]:
    """The run's stored overrides and its main spec file (settings.json, read and checked
    by the one reader of a run's settings, netspec.train.opening's)."""
    from netspec.train.opening import read_settings  # imports torch

    settings = read_settings(run)
    overrides = settings.get("overrides")
    main = settings.get("main")
    spec = run / "spec" / main if isinstance(main, str) and "/" not in main else None
    return (overrides if isinstance(overrides, dict) else {}), spec


def _open_run(run: Path, overrides: dict[str, Any]) -> Probe:
    stored, spec = _run_settings(run)
    onnx_file = run / "model.onnx"
    if onnx_file.is_file() and not overrides:
        try:
            return _open_onnx(onnx_file, stored, spec)
        except ModelError:
            pass  # exported before layers were named, or not this spec: read the weights
    from netspec.train.opening import open_run  # imports torch

    compiled, weights = open_run(run, overrides=overrides)
    return _torch_probe(compiled, weights, run)


def _load_onnx(path: Path) -> Any:
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        return onnx.load_model_from_string(read_capped(path, MAX_ONNX_BYTES))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not an ONNX model ({e})") from None


def _open_onnx(path: Path, overrides: Mapping[str, Any], spec: Path | None) -> Probe:
    """The ONNX side: the metadata's spec compiled (its sizes bound as exported), the graph
    run with every layer's tensor an output. A run's file must hold the run's `spec`."""
    from netspec.probe.onnx_side import OnnxLayers

    model = _load_onnx(path)
    props = {p.key: p.value for p in model.metadata_props}
    try:
        info: ModelInfo = from_props(props, str(path))
    except MetadataError as e:
        raise ModelError(str(e)) from None
    if spec is not None and (not spec.is_file() or spec.read_text() != info.spec):
        raise ModelError(f"{path}: not exported from the run's spec")
    file = str(spec) if spec is not None else str(path)
    compiled = compile_text(info.spec, file, info.network, **{**overrides, **info.sizes})
    want = [tuple(i.shape) for i in info.inputs]
    if [tuple(i.shape) for i in compiled.graph.inputs] != want:
        raise ModelError(f"{path}: its metadata's spec does not compile to the graph's inputs")
    runner = OnnxLayers(path, model, compiled, info)
    probe = Probe(compiled, info.inputs, info.outputs[0], info.labels, runner, runner.backend, path)
    _check_shapes(probe, path)
    return probe


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
