"""Every layer's output from an ONNX file netspec wrote, on ONNX Runtime, without torch.

netspec's exporter names each layer's own tensor after the layer (netspec.export.layers);
here those tensors become extra graph outputs of an in-memory copy of the model, and one
session run returns them all. A layer without a tensor of its own (an operation whose
`OpDef.passes_through`: identity, dropout at inference, whatever returns its input) reads
its input's tensor; a network output reads the output the metadata names, unless the
file's graph decodes it (a detector's boxes, netspec.export.detection): that output is no
layer's, and the head reads its own tensor from before the decoding. A file written before
the exporter named its layers has no such tensors: refused with the advice to export it
again.

A file is read as ONNX Runtime reads it from its path: the tensors it keeps in other files
(external data) come from its own folder, never from the current directory, and a tensor
whose file lies outside that folder is refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import ModelInfo
from netspec.compiler import Compiled
from netspec.errors import ModelError
from netspec.fileio import read_capped
from netspec.ops import REGISTRY
from netspec.runtime.session import session_options
from netspec.text import first_line

Arrays = dict[str, npt.NDArray[np.float32]]
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit on one file, and on its external data
RAW = ".raw"  # a decoded head's own tensor: LAYER.raw (netspec.export.onnx_export)


def load_model(path: Path) -> Any:
    """The ONNX model in ``path`` (at most MAX_ONNX_BYTES), its external data read from the
    model's own folder (`_load_external`); a ModelError naming the file otherwise."""
    import onnx
    from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

    try:
        model = onnx.load_model_from_string(read_capped(path, MAX_ONNX_BYTES))
    except (DecodeError, ValueError, RuntimeError) as e:
        raise ModelError(f"{path}: not an ONNX model ({e})") from None
    _load_external(model, path)
    return model


def _load_external(model: Any, path: Path) -> None:
    """Read into ``model`` the tensors it keeps in other files, each from a regular file
    inside the model's folder (never the current directory's, never through `..`, an
    absolute path or a link out of the folder), at most MAX_ONNX_BYTES in all."""
    from onnx import external_data_helper as external

    folder = path.resolve().parent
    tensors = [t for t in external._get_all_tensors(model) if external.uses_external_data(t)]
    total = 0
    for tensor in tensors:
        where = {e.key: e.value for e in tensor.external_data}
        location = where.get("location", "")
        file = folder / location
        inside = bool(location) and not PurePath(location).is_absolute()
        if not (inside and ".." not in PurePath(location).parts and _within(file, folder)):
            raise ModelError(
                f"{path}: tensor '{tensor.name[:80]}' keeps its data in {location[:200]!r}, "
                "outside the model's folder",
                hint="an ONNX file's external data must lie in its own folder",
            )
        if not file.is_file():
            raise ModelError(f"{path}: tensor '{tensor.name[:80]}': no data file {location!r}")
        length = where.get("length", "")
        total += int(length) if length.isdigit() else file.stat().st_size
    if total > MAX_ONNX_BYTES:
        raise ModelError(f"{path}: {total:,} bytes of external data; at most {MAX_ONNX_BYTES:,}")
    try:
        external.load_external_data_for_model(model, str(folder))
    except Exception as e:  # onnx raises ValueError, OSError, its own checker errors
        raise ModelError(f"{path}: cannot read its external data ({first_line(e)})") from None


def _within(file: Path, folder: Path) -> bool:
    try:
        return file.resolve().is_relative_to(folder)
    except (OSError, RuntimeError):  # a link loop
        return False


def check_outputs(model: Any, compiled: Compiled, info: ModelInfo, path: Path) -> None:
    """Refuse metadata that names an output the graph lacks, lists another number of
    outputs than its spec's network has, or gives another number of labels than the first
    output has classes: what `show` and `serve` would otherwise fail on while drawing."""
    graph = [o.name for o in model.graph.output]
    for k, output in enumerate(info.outputs):
        if output.name not in graph:
            raise ModelError(
                f"{path}: bad netspec metadata: outputs[{k}].name: the graph has no output "
                f"'{output.name}' (its outputs: {', '.join(graph)[:200]})"
            )
    if len(info.outputs) != len(compiled.graph.outputs):
        raise ModelError(
            f"{path}: bad netspec metadata: outputs: {len(info.outputs)} of them; its spec's "
            f"network '{compiled.name}' has {len(compiled.graph.outputs)}"
        )
    first = info.outputs[0]
    if info.labels is None or not first.scores:
        return
    shape = next(la.shape for la in compiled.layers if la.name == compiled.graph.outputs[0])
    width = math.prod(d for d in shape if isinstance(d, int))
    classes = 2 if first.kind == "sigmoid" and width == 1 else width
    if len(info.labels) not in (width, classes):
        raise ModelError(
            f"{path}: bad netspec metadata: labels: {len(info.labels)} of them for the "
            f"{classes} classes of output '{first.name}'"
        )


def _decoded_outputs(compiled: Compiled, info: ModelInfo) -> dict[str, str]:
    """The network outputs whose file output is not their layer's tensor but what the
    graph's decoding makes of it (a detector's boxes: netspec.export.detection), each
    layer's name to that output's: where the file has a decoding and the metadata gives the
    output a known shape other than the layer's."""
    if info.decoding is None:
        return {}
    shapes = {layer.name: tuple(layer.shape) for layer in compiled.layers}
    return {
        node: output.name
        for node, output in zip(compiled.graph.outputs, info.outputs, strict=True)
        if output.shape is not None
        and all(isinstance(d, int) for d in output.shape)
        and node in shapes
        and tuple(output.shape) != shapes[node]
    }


def _tensor_names(
    compiled: Compiled, info: ModelInfo, produced: set[str], path: Path
) -> dict[str, str]:
    """Each layer's tensor in the graph: its own name, a network output's, or its input's.
    A head that the graph decodes is read before its decoding: its tensor of its own
    (`LAYER.raw`, as the exporter names it), else its one input's (a head that returns its
    input, as `detect` does: the exporter names no tensor twice)."""
    decoded = _decoded_outputs(compiled, info)
    outputs = {
        node: output.name
        for node, output in zip(compiled.graph.outputs, info.outputs, strict=True)
        if node not in decoded
    }
    own = {name: name for name in produced if name not in decoded.values()}
    own |= {node: node + RAW for node in decoded if node + RAW in produced}
    inputs = {i.name: i.name for i in compiled.graph.inputs}
    tensors: dict[str, str] = {}
    for node in compiled.graph.nodes:
        through = REGISTRY[node.op].passes_through or node.name in decoded
        if node.name in outputs:
            tensors[node.name] = outputs[node.name]
        elif node.name in own:
            tensors[node.name] = own[node.name]
        elif through and len(node.inputs) == 1:
            source = node.inputs[0]
            tensors[node.name] = tensors.get(source) or inputs[source]
        else:
            raise ModelError(
                f"{path}: no tensor named after layer '{node.name}'; the file was exported "
                "before netspec named its layers' tensors",
                hint="export it again (`netspec export RUN`), or give the run directory",
            )
    return tensors


def _value_types(model: Any) -> dict[str, int]:
    """The element type of every tensor shape inference can type (default float)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except (onnx.shape_inference.InferenceError, ValueError):
        return {}
    infos = [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
    return {v.name: v.type.tensor_type.elem_type for v in infos}


class OnnxLayers:
    """ONNX Runtime over the file, every layer's tensor an output."""

    backend = "onnxruntime"

    def __init__(
        self, path: Path, model: Any, compiled: Compiled, info: ModelInfo, threads: int | None
    ) -> None:
        import onnx
        import onnxruntime as ort

        produced = {name for n in model.graph.node for name in n.output}
        self.tensors = _tensor_names(compiled, info, produced, path)
        self.shapes = {layer.name: layer.shape for layer in compiled.layers}
        present = {o.name for o in model.graph.output}
        types = _value_types(model)
        for name in dict.fromkeys(self.tensors.values()):
            if name not in present and name in produced:
                elem = types.get(name) or onnx.TensorProto.FLOAT
                model.graph.output.append(onnx.helper.make_tensor_value_info(name, elem, None))
        self.fetch = [t for t in dict.fromkeys(self.tensors.values()) if t in produced | present]
        try:
            self.session = ort.InferenceSession(
                model.SerializeToString(),
                session_options(threads),
                providers=["CPUExecutionProvider"],
            )
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types
            raise ModelError(f"{path}: ONNX Runtime cannot open it: {first_line(e)}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        first = self.session.get_inputs()[0].shape[0]
        self.batch = first if isinstance(first, int) else None
        self.path = path
        self._producers = {out: node for node in model.graph.node for out in node.output}
        self._initializers = {t.name: t for t in model.graph.initializer}

    def kernels(self, layer: str) -> npt.NDArray[np.float32] | None:
        """The weight of the Conv that computes `layer`'s tensor, `(out, in, kh, kw)`."""
        from onnx import numpy_helper

        node = self._producers.get(self.tensors[layer])
        if node is None or node.op_type != "Conv" or node.input[1] not in self._initializers:
            return None
        return np.asarray(numpy_helper.to_array(self._initializers[node.input[1]]), np.float32)

    def _run(self, x: npt.NDArray[np.float32]) -> Sequence[Any]:
        feeds = dict.fromkeys(self.input_names, x)
        try:
            result: Sequence[Any] = self.session.run(self.fetch, feeds)
        except Exception as e:  # ORT's own error types for inputs it cannot take
            raise ModelError(f"{self.path}: ONNX Runtime failed: {first_line(e)}") from None
        return result

    def __call__(self, x: npt.NDArray[np.float32]) -> Arrays:
        x = np.ascontiguousarray(x, np.float32)
        if self.batch is None or self.batch == len(x):
            values = list(self._run(x))
        else:  # a fixed batch: one padded call per chunk
            parts = []
            for start in range(0, len(x), self.batch):
                chunk = x[start : start + self.batch]
                fill = np.repeat(chunk[-1:], self.batch - len(chunk), axis=0)
                outs = self._run(np.concatenate([chunk, fill]))
                parts.append([o[: len(chunk)] for o in outs])
            values = [np.concatenate(col) for col in zip(*parts, strict=True)]
        by_tensor = dict.fromkeys(self.input_names, x) | dict(zip(self.fetch, values, strict=True))
        return {
            layer: np.asarray(by_tensor[tensor], np.float32).reshape(len(x), *self.shapes[layer])
            for layer, tensor in self.tensors.items()
        }
