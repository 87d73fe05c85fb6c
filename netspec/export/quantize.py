"""Reduced precision: fp16 conversion, and int8 static quantization in QDQ format.

int8 follows ONNX Runtime's recipe for x86: pre-process (shape inference, basic
optimizations that fold batch norms into convolutions), then `quantize_static` with
QuantizeLinear/DequantizeLinear pairs, uint8 activations calibrated by min/max over
the given samples, and int8 weights per output channel. Both stay standard ONNX.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnx

from netspec.errors import ExportError

CALIBRATION_BATCH = 32


def checked_calibration(samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Calibration samples as float32, refused when empty or not all finite (min/max
    calibration over a NaN has no range to quantize to)."""
    if samples.ndim == 0 or len(samples) == 0:
        raise ExportError("int8 calibration needs at least one sample; got none")
    floats = np.asarray(samples, np.float32)
    bad = ~np.isfinite(floats)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(floats), -1).any(axis=1)))
        raise ExportError(
            f"int8 calibration data holds {int(bad.sum())} NaN or infinite values "
            f"(the first in sample {first}); calibration needs finite numbers"
        )
    return floats


def to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights and activations in fp16; inputs and outputs stay fp32, so callers do not change."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    converted: onnx.ModelProto = convert_float_to_float16(model, keep_io_types=True)
    _sort_nodes(converted.graph)  # the converter appends its input casts at the end
    return converted


def _sort_nodes(graph: onnx.GraphProto) -> None:
    """Order nodes so each comes after the producers of its inputs (stable otherwise)."""
    produced_by = {out: i for i, node in enumerate(graph.node) for out in node.output}
    order: list[int] = []
    state: dict[int, bool] = {}  # False: visiting, True: placed

    def place(i: int) -> None:
        stack = [(i, iter(graph.node[i].input))]
        state[i] = False
        while stack:
            node, inputs = stack[-1]
            dep = next(
                (
                    produced_by[n]
                    for n in inputs
                    if n in produced_by and produced_by[n] not in state
                ),
                None,
            )
            if dep is None:
                stack.pop()
                state[node] = True
                order.append(node)
            else:
                state[dep] = False
                stack.append((dep, iter(graph.node[dep].input)))

    for i in range(len(graph.node)):
        if i not in state:
            place(i)
    nodes = [graph.node[i] for i in order]
    del graph.node[:]
    graph.node.extend(nodes)


class _Reader:
    """Feeds calibration batches to `quantize_static` (ONNX Runtime's CalibrationDataReader)."""

    def __init__(self, inputs: Mapping[str, npt.NDArray[np.float32]]) -> None:
        self.inputs = inputs
        self.batches = self._batches()

    def _batches(self) -> Iterator[dict[str, npt.NDArray[np.float32]]]:
        n = len(next(iter(self.inputs.values())))
        for start in range(0, n, CALIBRATION_BATCH):
            yield {k: v[start : start + CALIBRATION_BATCH] for k, v in self.inputs.items()}

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        return next(self.batches, None)

    def rewind(self) -> None:
        self.batches = self._batches()


def to_int8(
    model: onnx.ModelProto, calibration: Mapping[str, npt.NDArray[np.float32]]
) -> onnx.ModelProto:
    """Static QDQ int8, calibrated on `calibration` (one model-ready array per input)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    reader = type("Reader", (_Reader, CalibrationDataReader), {})(calibration)
    with tempfile.TemporaryDirectory() as tmp:
        fp32, pre, out = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        onnx.save(model, str(fp32))
        quant_pre_process(str(fp32), str(pre))
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )
        return onnx.load(str(out))
