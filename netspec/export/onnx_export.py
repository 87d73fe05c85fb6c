"""Export a compiled network to ONNX: standard operators, checked, verified, written atomically.

The steps, in order:
1. trace the PyTorch module (TorchScript exporter, `dynamo=False`) with every weight kept
   as a named initializer (its `state_dict` name; a shared weight is one initializer);
2. clean the graph with ONNX Runtime's basic offline optimizations (constant folding,
   redundant-node removal; standard operators only), weights held out of the folding so
   that their names survive for `netspec bench --vs torch`;
3. optionally convert to fp16 or quantize to int8 (static QDQ);
4. add netspec's metadata, write to a temporary file beside the destination, run
   `onnx.checker` (full check) and ONNX Runtime against PyTorch, then `os.replace`.
A failed check leaves the destination as it was.
"""

from __future__ import annotations

import copy
import io
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

import netspec
from netspec.artifact import InputInfo, ModelInfo, OutputInfo, Precision
from netspec.errors import ExportError
from netspec.export.metadata import default_labels, output_kind
from netspec.export.verify import Agreement, ReducedCheck, check_fp32, check_reduced
from netspec.fileio import atomic_path
from netspec.text import UNBOUND_SIZE, first_line

if TYPE_CHECKING:
    import onnx
    import torch

    from netspec.compiler import Compiled

Log = Callable[[str], None]
FloatArray = npt.NDArray[np.float32]


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


def export_compiled(
    compiled: Compiled,
    path: Path,
    *,
    weights: torch.nn.Module | None = None,
    opset: int = 17,
    batch: str | int = "dynamic",
    fp16: bool = False,
    int8_calibration: np.ndarray | None = None,
    verify: bool = True,
    samples: np.ndarray | None = None,
    labels: list[str] | None = None,
    normalization: tuple[float, float] | None = None,
    log: Log = print,
    targets: np.ndarray | None = None,
) -> ExportReport:
    """Export `compiled` (with `weights`, else freshly initialized) to the ONNX file `path`.

    `samples` and `int8_calibration` are model-ready float32 `(N, C, H, W)` arrays (already
    normalized; a model with several inputs gets the same array on each); `targets` are the
    samples' true classes, for accuracy under fp16/int8.
    `labels` names the classes; `normalization` is the input's `(mean, std)` (default: the
    spec's `train` section). Raise ExportError, leaving `path` untouched, on any failure.
    """
    import torch

    from netspec.lower import to_torch

    if fp16 and int8_calibration is not None:
        raise ExportError("choose one of fp16 and int8, not both")
    if not (batch == "dynamic" or (isinstance(batch, int) and batch > 0)):
        raise ExportError(f"batch must be 'dynamic' or a positive number, got {batch!r}")
    try:
        module = _prepared(weights if weights is not None else to_torch(compiled))
    except NotImplementedError as e:  # an operation without a PyTorch builder
        raise ExportError(f"{compiled.name}: cannot lower to PyTorch: {e}") from None
    if weights is None:
        log(f"exporting {compiled.name} with untrained (freshly initialized) weights")
    examples = _example_inputs(compiled, batch)
    traced = _trace(module, compiled, examples, opset, batch)
    precision: Precision = "int8" if int8_calibration is not None else "fp16" if fp16 else "fp32"
    try:
        fp32 = _cleanup(traced)
        final = _reduce(fp32, precision, int8_calibration, compiled)
    except RuntimeError as e:  # ONNX Runtime's Fail, InvalidGraph, ... derive from it
        raise ExportError(
            f"{compiled.name}: ONNX Runtime cannot optimize or convert the "
            f"traced graph: {first_line(e)}"
        ) from None
    info = _model_info(compiled, module, fp32, precision, labels, normalization)
    _set_metadata(final, info)
    log(
        f"graph: {len(traced.graph.node)} nodes as traced, {len(final.graph.node)} after "
        f"cleanup{'' if precision == 'fp32' else f' and {precision} conversion'}; "
        f"{len(final.graph.initializer)} initializers"
    )
    report = ExportReport(
        path,
        precision,
        opset,
        len(traced.graph.node),
        len(final.graph.node),
        len(final.graph.initializer),
    )
    with torch.no_grad():
        _write_checked(
            final,
            path,
            lambda tmp: _verify(
                report,
                module,
                tmp,
                fp32,
                compiled,
                examples,
                samples,
                targets,
                verify,
                log,
                batch if isinstance(batch, int) else None,
            ),
        )
    log(f"wrote {path} ({precision}, opset {opset}, batch {batch})")
    return report


def _prepared(module: torch.nn.Module) -> torch.nn.Module:
    """A CPU fp32 copy in eval mode, so the caller's module (a training run's) is not touched."""
    return copy.deepcopy(module).cpu().float().eval()


def _example_inputs(compiled: Compiled, batch: str | int) -> list[torch.Tensor]:
    import torch

    n = batch if isinstance(batch, int) else 2
    generator = torch.Generator().manual_seed(0)
    return [
        torch.randn(
            n, *(d if isinstance(d, int) else UNBOUND_SIZE for d in i.shape), generator=generator
        )
        for i in compiled.graph.inputs
    ]


def _dynamic_axes(compiled: Compiled, batch: str | int) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for i in compiled.graph.inputs:
        named = {k + 1: str(d) for k, d in enumerate(i.shape) if isinstance(d, str)}
        axes[i.name] = ({0: "batch"} if batch == "dynamic" else {}) | named
    for o in compiled.graph.outputs:
        axes[o] = {0: "batch"} if batch == "dynamic" else {}
    return {k: v for k, v in axes.items() if v}


def _trace(
    module: torch.nn.Module,
    compiled: Compiled,
    examples: list[torch.Tensor],
    opset: int,
    batch: str | int,
) -> onnx.ModelProto:
    """TorchScript export with weights as (input-listed) initializers, so nothing folds them."""
    import onnx
    import torch

    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                tuple(examples),
                buffer,  # type: ignore[arg-type]  # a file object works; the hint says path
                dynamo=False,
                opset_version=opset,
                input_names=[i.name for i in compiled.graph.inputs],
                output_names=list(compiled.graph.outputs),
                dynamic_axes=_dynamic_axes(compiled, batch),
                do_constant_folding=False,
                keep_initializers_as_inputs=True,
            )
    except Exception as e:  # the exporter raises many types; report it as an export failure
        raise ExportError(
            f"{compiled.name}: PyTorch could not export to ONNX opset {opset}: {e}"
        ) from None
    return onnx.load_from_string(buffer.getvalue())


def _cleanup(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX Runtime's basic offline optimizations, weights held out (they are graph inputs
    while it runs), then the weights made plain initializers again."""
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
    compiled: Compiled, normalization: tuple[float, float] | None = None
) -> tuple[InputInfo, ...]:
    """Each input's shape and `(mean, std)`: as given, else the spec's `train` section's."""
    if normalization is None and compiled.train is not None:
        normalization = (compiled.train.normalize.mean, compiled.train.normalize.std)
    mean, std = normalization or (0.0, 1.0)
    return tuple(InputInfo(i.name, tuple(i.shape), mean, std) for i in compiled.graph.inputs)


def _model_info(
    compiled: Compiled,
    module: torch.nn.Module,
    model: onnx.ModelProto,
    precision: Precision,
    labels: list[str] | None,
    normalization: tuple[float, float] | None,
) -> ModelInfo:
    outputs = tuple(OutputInfo(o, output_kind(compiled.graph, o)) for o in compiled.graph.outputs)
    classes = compiled.inferred.layer(compiled.graph.outputs[0]).shape
    dataset = compiled.train.dataset if compiled.train is not None else None
    names = (
        tuple(labels)
        if labels is not None
        else default_labels(dataset, int(classes[0]) if len(classes) == 1 else 0)
    )
    return ModelInfo(
        network=compiled.name,
        spec=compiled.source,
        version=netspec.__version__,
        inputs=input_infos(compiled, normalization),
        outputs=outputs,
        labels=names,
        precision=precision,
        weights=_weight_names(module, model) if precision != "int8" else {},
        sizes=dict(compiled.graph.symbols),
    )


def _reduce(
    fp32: onnx.ModelProto, precision: Precision, calibration: np.ndarray | None, compiled: Compiled
) -> onnx.ModelProto:
    from netspec.export.quantize import to_fp16, to_int8

    if precision == "fp16":
        return to_fp16(fp32)
    if precision == "int8":
        assert calibration is not None
        names = [i.name for i in compiled.graph.inputs]
        return to_int8(fp32, {n: calibration.astype(np.float32) for n in names})
    return fp32


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
        except RuntimeError as e:
            raise ExportError(f"{path}: ONNX Runtime cannot run it: {first_line(e)}") from None


def _verify(
    report: ExportReport,
    module: torch.nn.Module,
    tmp: Path,
    fp32: onnx.ModelProto,
    compiled: Compiled,
    examples: list[torch.Tensor],
    samples: np.ndarray | None,
    targets: np.ndarray | None,
    verify: bool,
    log: Log,
    batch: int | None,
) -> None:
    if not verify:
        log("verification skipped (--no-verify): only onnx.checker ran")
        return
    random_inputs = [e.numpy() for e in examples]
    sample_inputs = None if samples is None else [samples.astype(np.float32)] * len(examples)
    if report.precision == "fp32":
        report.checks = check_fp32(module, tmp, random_inputs, sample_inputs, batch, log)
        failed = [c for c in report.checks if not c.ok]
        if failed:
            raise ExportError(
                f"{report.path}: ONNX Runtime disagrees with PyTorch on "
                f"{failed[0].where}: max abs err {failed[0].max_abs:.3g}, max rel "
                f"err {failed[0].max_rel:.3g} (allowed rtol 1e-3, atol 1e-5)"
            )
        return
    kind = output_kind(compiled.graph, compiled.graph.outputs[0])
    report.reduced = check_reduced(
        module,
        tmp,
        fp32,
        sample_inputs or random_inputs,
        targets,
        kind,
        report.precision,
        batch,
        log,
    )
