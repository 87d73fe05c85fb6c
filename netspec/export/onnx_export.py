"""Export a compiled network to ONNX: standard operators, checked, verified, written atomically.

The steps, in order:
1. trace the PyTorch module (TorchScript exporter, `dynamo=False`) with every weight kept
   as a named initializer (its `state_dict` name; a shared weight is one initializer);
2. clean the graph with ONNX Runtime's basic offline optimizations (constant folding,
   redundant-node removal; standard operators only), weights held out of the folding so
   that their names survive for `netspec bench --vs torch`;
3. optionally convert to fp16 or quantize to int8 (static, quantize.DEFAULT_INT8) on finite
   calibration data, int8 then timed against fp32: a warning when it is the slower, an
   ExportError under `ExportOptions.int8_min_speedup`;
4. add netspec's metadata (checked as `netspec run` will read it), write to a temporary
   file beside the destination, run `onnx.checker` (full check) and ONNX Runtime against
   PyTorch (a NaN or Inf on either side fails it), then `os.replace`.
A failed check leaves the destination as it was; every failure is an ExportError.

`ExportOptions` says how to export; the arrays to check against are arguments of their own.
"""

from __future__ import annotations

import copy
import io
import math
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

import netspec
from netspec.artifact import (
    InputInfo,
    ModelInfo,
    OutputKind,
    Precision,
    Values,
    relative_sources,
)
from netspec.errors import ExportError, NetspecError
from netspec.export.detection import decoded, decoding, exported_outputs, readable
from netspec.export.metadata import default_labels
from netspec.export.quantize import Int8Speed, checked_calibration
from netspec.export.verify import Agreement, ReducedCheck, check_fp32, check_reduced
from netspec.fileio import atomic_path, output_target
from netspec.kinds import output_infos
from netspec.text import bound_shape, first_line

if TYPE_CHECKING:
    import onnx
    import torch

    from netspec.compiler import Compiled

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]


MAX_BATCH = 4096  # a fixed batch beyond this is a typo, not a deployment
MAX_EXAMPLE_ELEMENTS = 1 << 28  # the traced example batch: 1 GiB of float32
OPSETS = (13, 21)  # the ONNX opsets `--opset` accepts


@dataclass(frozen=True)
class ExportOptions:
    """How to export: the opset, the batch axis, the precision, whether to verify, and what
    the metadata says (class `labels`; the input's `(mean, std)`, by default the spec's
    `train` section's). Checked when made: a bad value is an ExportError.

    >>> ExportOptions(batch=99999999999)
    Traceback (most recent call last):
        ...
    netspec.errors.ExportError: batch 99999999999: at most 4096 (or 'dynamic')
    """

    opset: int = 17
    batch: int | str = "dynamic"  # a positive number, or "dynamic"
    precision: Precision = "fp32"
    verify: bool = True
    labels: tuple[str, ...] | None = None
    normalization: tuple[Values, Values] | None = None  # (mean, std): one, or one per channel
    # int8: refuse a file under this many times fp32's speed (None: warn when slower)
    int8_min_speedup: float | None = None

    def __post_init__(self) -> None:
        batch = self.batch
        if batch != "dynamic" and (not isinstance(batch, int) or isinstance(batch, bool)):
            raise ExportError(f"batch must be 'dynamic' or a positive number, got {batch!r}")
        if isinstance(batch, int) and not 0 < batch <= MAX_BATCH:
            raise ExportError(
                f"batch {batch}: {'at most' if batch > 0 else 'at least 1 and at most'} "
                f"{MAX_BATCH} (or 'dynamic')"
            )
        if not (isinstance(self.opset, int) and OPSETS[0] <= self.opset <= OPSETS[1]):
            raise ExportError(
                f"opset {self.opset!r}: netspec exports opsets {OPSETS[0]} to {OPSETS[1]}"
            )
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ExportError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.int8_min_speedup is not None and not self.int8_min_speedup > 0:
            raise ExportError(f"int8_min_speedup {self.int8_min_speedup}: must be above 0")
        if self.normalization is not None:
            mean, std = (v if isinstance(v, tuple) else (v,) for v in self.normalization)
            if not (all(map(math.isfinite, (*mean, *std))) and min(std) > 0):
                raise ExportError(
                    f"normalization (mean {mean}, std {std}): needs finite numbers, std > 0"
                )

    @property
    def fixed_batch(self) -> int | None:
        return self.batch if isinstance(self.batch, int) else None


@dataclass
class ExportReport:
    """What an export produced and how it was checked."""

    path: Path
    precision: Precision
    opset: int
    nodes_before: int  # as traced
    nodes_after: int  # after cleanup (and conversion)
    initializers: int
    checks: list[Agreement] = field(default_factory=list)  # fp32: ORT against PyTorch
    reduced: ReducedCheck | None = None  # fp16/int8: agreement, accuracy, speed
    int8_speed: Int8Speed | None = None  # int8: both files timed at the calibration batch


@dataclass(frozen=True, eq=False)
class _Evidence:
    """What verification runs on: the module, the fp32 graph, and the inputs."""

    module: torch.nn.Module
    fp32: onnx.ModelProto
    kind: OutputKind
    examples: list[torch.Tensor]
    samples: FloatArray | None
    targets: npt.NDArray[np.int64] | None


def export_compiled(
    compiled: Compiled,
    path: str | PathLike[str],
    options: ExportOptions = ExportOptions(),
    *,
    weights: torch.nn.Module | None = None,
    samples: npt.NDArray[Any] | None = None,
    targets: npt.NDArray[Any] | None = None,
    calibration: npt.NDArray[Any] | None = None,
    log: Log = print,
) -> ExportReport:
    """Export `compiled` (with `weights`, else freshly initialized) to the ONNX file `path`.

    `samples` and `calibration` (for int8) are model-ready float32 `(N, C, H, W)` arrays
    (already normalized; a model with several inputs gets the same array on each); `targets`
    are the samples' true classes, for accuracy under fp16/int8. Raise ExportError, leaving
    `path` untouched, on any failure.
    """
    import torch

    path = Path(path)
    output_target(path)  # a directory, a socket, a dangling link: refused before the work
    if (options.precision == "int8") != (calibration is not None):
        raise ExportError(
            "int8 needs calibration samples"
            if calibration is None
            else "calibration samples are for int8 only"
        )
    examples = _example_inputs(compiled, options.batch)
    module = _lowered(compiled, weights)
    if weights is None:
        log(f"exporting {compiled.name} with untrained (freshly initialized) weights")
    traced = _trace(module, compiled, examples, options.opset, options.batch)
    try:
        fp32 = _cleanup(traced, [o.name for o in output_infos(compiled)])
        final, int8_speed = _reduce(fp32, options, calibration, compiled, log)
    except NetspecError:
        raise
    except Exception as e:  # ONNX Runtime's Fail, InvalidGraph, ... derive from Exception only
        raise ExportError(
            f"{compiled.name}: ONNX Runtime cannot optimize or convert the "
            f"traced graph: {first_line(e)}"
        ) from None
    _set_metadata(final, _model_info(compiled, module, fp32, options, path))
    log(
        f"graph: {len(traced.graph.node)} nodes as traced, {len(final.graph.node)} after "
        f"cleanup{'' if options.precision == 'fp32' else f' and {options.precision} conversion'}"
        f"; {len(final.graph.initializer)} initializers"
    )
    report = ExportReport(
        path,
        options.precision,
        options.opset,
        len(traced.graph.node),
        len(final.graph.node),
        len(final.graph.initializer),
        int8_speed=int8_speed,
    )
    first = output_infos(compiled)[0]
    evidence = _Evidence(
        module,
        fp32,
        first.kind,
        examples,
        _floats(samples),
        _classes(targets) if first.scores else None,
    )
    with torch.no_grad():
        _write_checked(final, path, lambda tmp: _verify(report, evidence, tmp, options, log))
    log(f"wrote {path} ({options.precision}, opset {options.opset}, batch {options.batch})")
    return report


def _lowered(compiled: Compiled, weights: torch.nn.Module | None) -> torch.nn.Module:
    """The module to export, as a CPU fp32 copy in eval mode; any failure is an ExportError."""
    from netspec.lower import to_torch

    try:
        return decoded(compiled, _prepared(weights if weights is not None else to_torch(compiled)))
    except NotImplementedError as e:  # an operation without a PyTorch builder
        raise ExportError(f"{compiled.name}: cannot lower to PyTorch: {e}") from None
    except (ValueError, TypeError, RuntimeError) as e:  # a module's constructor refused
        raise ExportError(
            f"{compiled.name}: cannot build the PyTorch module: {first_line(e)}"
        ) from None


def _floats(array: npt.NDArray[Any] | None) -> FloatArray | None:
    return None if array is None else np.asarray(array, np.float32)


def _classes(array: npt.NDArray[Any] | None) -> npt.NDArray[np.int64] | None:
    return None if array is None else np.asarray(array, np.int64)


def _prepared(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU fp32 copy in eval mode, so the caller's module (a training run's) is not touched."""
    return copy.deepcopy(module).cpu().float().eval()


def _example_inputs(compiled: Compiled, batch: str | int) -> list[torch.Tensor]:
    """One seeded random batch per input (2 rows for a dynamic batch), refused before it is
    made when it would exceed MAX_EXAMPLE_ELEMENTS."""
    import torch

    n = batch if isinstance(batch, int) else 2
    shapes = [(n, *bound_shape(i.shape)) for i in compiled.graph.inputs]
    elements = sum(math.prod(s) for s in shapes)
    if elements > MAX_EXAMPLE_ELEMENTS:
        raise ExportError(
            f"{compiled.name}: a batch of {n} is {elements:,} input values to trace and verify; "
            f"at most {MAX_EXAMPLE_ELEMENTS:,}",
            hint="export with a smaller --batch, or 'dynamic'",
        )
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(*s, generator=generator) for s in shapes]


def _dynamic_axes(compiled: Compiled, batch: str | int) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for i in compiled.graph.inputs:
        named = {k + 1: str(d) for k, d in enumerate(i.shape) if isinstance(d, str)}
        axes[i.name] = ({0: "batch"} if batch == "dynamic" else {}) | named
    for o in output_infos(compiled):  # an output's symbolic sizes keep their names (`3*H`)
        named = {k + 1: str(d) for k, d in enumerate(o.shape or ()) if isinstance(d, str)}
        axes[o.name] = ({0: "batch"} if batch == "dynamic" else {}) | named
    return {k: v for k, v in axes.items() if v}


def _trace(
    module: torch.nn.Module,
    compiled: Compiled,
    examples: list[torch.Tensor],
    opset: int,
    batch: str | int,
) -> onnx.ModelProto:
    """TorchScript export with weights as (input-listed) initializers, so nothing folds them,
    and each layer's own tensor named after the layer (netspec.export.layers)."""
    import onnx
    import torch

    from netspec.export.layers import WithLayers
    from netspec.lower.detection import Decoded

    buffer = io.BytesIO()
    # a detector's module is its network then the decoding: the network's layers are tapped
    network = module.network if isinstance(module, Decoded) else module
    named = WithLayers(module, compiled.graph, network=network)
    try:
        with torch.no_grad():
            layers = named.layer_names(*examples)
        outputs = [o.name for o in output_infos(compiled)]
        # a head whose graph decodes it: its layer's own tensor is not the output of its name
        layers = [f"{name}.raw" if name in outputs else name for name in layers]
        axes = _dynamic_axes(compiled, batch)
        if batch == "dynamic":
            axes |= {name: {0: "batch"} for name in layers}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                named,
                tuple(examples),
                buffer,  # type: ignore[arg-type]  # a file object works; the hint says path
                dynamo=False,
                opset_version=opset,
                input_names=[i.name for i in compiled.graph.inputs],
                output_names=outputs + layers,
                dynamic_axes=axes,
                do_constant_folding=False,
                keep_initializers_as_inputs=True,
            )
    except Exception as e:  # the exporter raises many types; report it as an export failure
        raise ExportError(
            f"{compiled.name}: PyTorch could not export to ONNX opset {opset}: {e}"
        ) from None
    finally:
        named.close()
    return onnx.load_from_string(buffer.getvalue())


def _cleanup(model: onnx.ModelProto, outputs: list[str]) -> onnx.ModelProto:
    """ONNX Runtime's basic offline optimizations, weights held out (they are graph inputs
    while it runs), then the weights made plain initializers again and the layers' outputs
    dropped from the graph's, leaving the network's `outputs` (the layers' tensors keep their
    names: netspec.export.layers)."""
    import onnx
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "basic.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(out)
        options.log_severity_level = 3
        ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        cleaned = onnx.load(str(out))
    weights = {t.name for t in cleaned.graph.initializer}
    inputs = [i for i in cleaned.graph.input if i.name not in weights]
    del cleaned.graph.input[:]
    cleaned.graph.input.extend(inputs)
    kept = [o for o in cleaned.graph.output if o.name in outputs]
    del cleaned.graph.output[:]
    cleaned.graph.output.extend(kept)
    _prune_opsets(cleaned)
    return cleaned


def _prune_opsets(model: onnx.ModelProto) -> None:
    """Keep only the operator sets the nodes use (ONNX Runtime lists all it knows)."""
    used = {n.domain for n in model.graph.node} | {""}
    kept = [o for o in model.opset_import if o.domain in used]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _weight_names(module: torch.nn.Module, model: onnx.ModelProto) -> dict[str, str]:
    """Every state_dict name -> the initializer holding it (aliases of a shared weight map to
    the one initializer)."""
    present = {t.name for t in model.graph.initializer}
    groups: dict[int, list[str]] = {}
    for name, tensor in module.state_dict(keep_vars=True).items():
        groups.setdefault(id(tensor), []).append(name)
    names: dict[str, str] = {}
    for members in groups.values():
        owner = next((m for m in members if m in present), None)
        if owner is not None:
            names.update(dict.fromkeys(members, owner))
    return names


def input_infos(
    compiled: Compiled, normalization: tuple[Values, Values] | None = None
) -> tuple[InputInfo, ...]:
    """Each input's shape, `(mean, std)` (as given, else the spec's `train` section's) and
    the section's `resize` rule."""
    train = compiled.train
    if normalization is None and train is not None:
        normalization = (train.normalize.mean, train.normalize.std)
    mean, std = normalization or (0.0, 1.0)
    resize = train.resize if train is not None else None
    return tuple(
        InputInfo(i.name, tuple(i.shape), mean, std, resize) for i in compiled.graph.inputs
    )


def _model_info(
    compiled: Compiled,
    module: torch.nn.Module,
    model: onnx.ModelProto,
    options: ExportOptions,
    path: Path,
) -> ModelInfo:
    """The metadata to write, checked as `run` will check it (so nothing unreadable is written)."""
    outputs = exported_outputs(compiled)
    exported = [o.name for o in model.graph.output]
    if exported != [o.name for o in outputs]:  # what `run` reports must be what ORT returns
        raise ExportError(
            f"{compiled.name}: the ONNX graph's outputs are {', '.join(exported)}, "
            f"not the spec's {', '.join(o.name for o in outputs)}"
        )
    dataset = compiled.train.dataset if compiled.train is not None else None
    names = options.labels if options.labels is not None else default_labels(dataset, outputs[0])
    info = ModelInfo(
        network=compiled.name,
        spec=compiled.source,
        version=netspec.__version__,
        inputs=input_infos(compiled, options.normalization),
        outputs=outputs,
        labels=names,
        precision=options.precision,
        weights=_weight_names(module, model) if options.precision != "int8" else {},
        sizes=dict(compiled.graph.symbols),
        decoding=decoding(compiled),
        sources=relative_sources(compiled.program.main_file, compiled.program.sources.texts),
    )
    readable(info, path)
    return info


def _reduce(
    fp32: onnx.ModelProto,
    options: ExportOptions,
    calibration: npt.NDArray[Any] | None,
    compiled: Compiled,
    log: Log,
) -> tuple[onnx.ModelProto, Int8Speed | None]:
    """The file's graph in `options.precision`; int8 also timed against fp32 and judged
    (quantize.int8_checked: a warning, or an ExportError under `int8_min_speedup`)."""
    from netspec.export.quantize import int8_checked, to_fp16

    if options.precision == "fp16":
        return to_fp16(fp32), None
    if options.precision == "int8":
        assert calibration is not None
        samples = checked_calibration(calibration)
        names = [i.name for i in compiled.graph.inputs]
        batch, minimum = options.fixed_batch, options.int8_min_speedup
        return int8_checked(fp32, samples, names, batch, minimum, log)
    return fp32, None


def _set_metadata(model: onnx.ModelProto, info: ModelInfo) -> None:
    del model.metadata_props[:]
    for key, value in info.to_props().items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name, model.producer_version = "netspec", info.version
    model.graph.name = info.network


def _write_checked(model: onnx.ModelProto, path: Path, check: Callable[[Path], None]) -> None:
    """Write to a temporary file beside `path`, check it, then move it into place."""
    import onnx

    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())
        try:
            onnx.checker.check_model(str(tmp), full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise ExportError(f"{path}: the exported graph is not valid ONNX: {e}") from None
        try:
            check(tmp)
        except NetspecError:
            raise
        except Exception as e:  # ONNX Runtime's own error types derive from Exception only
            raise ExportError(f"{path}: ONNX Runtime cannot run it: {first_line(e)}") from None


def _verify(
    report: ExportReport, evidence: _Evidence, tmp: Path, options: ExportOptions, log: Log
) -> None:
    if not options.verify:
        log("verification skipped (--no-verify): only onnx.checker ran")
        return
    random_inputs = [e.numpy() for e in evidence.examples]
    samples = evidence.samples
    sample_inputs = None if samples is None else [samples] * len(random_inputs)
    batch = options.fixed_batch
    if report.precision == "fp32":
        report.checks = check_fp32(evidence.module, tmp, random_inputs, sample_inputs, batch, log)
        failed = [c for c in report.checks if not c.ok]
        if failed:
            raise ExportError(f"{report.path}: {failed[0].failure()}")
        return
    report.reduced = check_reduced(
        evidence.module,
        tmp,
        evidence.fp32,
        sample_inputs or random_inputs,
        evidence.targets,
        evidence.kind,
        report.precision,
        batch,
        log,
    )
