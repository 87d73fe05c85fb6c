"""Reduced precision: fp16 conversion, and int8 static quantization, with a check that the
int8 file is faster than the fp32 one on this CPU.

int8 follows ONNX Runtime's recipe for x86: pre-process (shape inference, basic
optimizations that fold batch norms into convolutions), then `quantize_static`, activations
calibrated by min/max over the given samples. `Int8Format` names the choices ONNX Runtime
offers; DEFAULT_INT8 is the fastest measured on this machine's AVX-512 VNNI CPU
(benchmarks/bench_int8.py, docs/benchmarks.md "int8 on this CPU"): QuantizeLinear/
DequantizeLinear pairs (QDQ), uint8 activations, int8 weights per output channel.

Which operations are int8 (`int8_region`): every convolution and dense layer except thin
ones, and each other operation ONNX Runtime can quantize only where it lies on a path of
such operations from one int8 convolution or dense layer to another. The rest stays fp32:
- A thin convolution (over one input channel: a first layer reading a grey image) sums only
  kH x kW products per output (25 for 5x5): in int8 it ran 0.26x to 0.68x as fast as in
  fp32 here, an int8 matrix product that short being all packing and layout. Over three
  channels (an RGB stem, 3x3x3 = 27) int8 is about as fast as fp32, and keeping it fp32 cost
  mobilenet_v2 a fifth of its int8 speed.
- What follows a thin convolution up to the next int8 one (its activation, its pooling).
- Operations that lead only to fp32 ones: the pieces of local response normalization before
  its power (which has no int8 kernel), and everything after the last convolution or dense
  layer (a softmax, a detector's box decoding: int8 there costs accuracy and buys nothing).
- A pooling fed by an fp32 operation: uint8 pooling outside ONNX Runtime's NHWC layout (after
  an fp32 operation there is no layout to join) ran about ten times slower than fp32's. For
  it to stay fp32, ONNX Runtime's QDQ propagation (which moves a quantization up through a
  MaxPool) must be off: netspec's sessions turn it off (netspec.runtime.session).
Both formats stay standard ONNX.

The speed check (`time_int8`, `judge_int8_speed`) times both files at the calibration
batch, interleaved, and warns when int8 is the slower (or refuses it under a minimum the
caller asks for): an int8 file is smaller, and may be faster on another CPU, but nobody
should ship one believing it faster when it is not.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import onnx

from netspec.errors import ExportError

CALIBRATION_BATCH = 32  # rows per calibration batch, and per timed call
COMPUTE_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})
SPEED_ROUNDS = 5  # interleaved timing rounds after a warm-up (fewer when the calls are slow)
SPEED_BUDGET_S = 10.0  # stop timing after this long, once 3 rounds are in


@dataclass(frozen=True)
class Int8Format:
    """One of the int8 formats ONNX Runtime offers: QDQ pairs or QOperator nodes (QLinearConv,
    ...), signed (S8S8) or unsigned (U8S8) activations, weights per output channel or per
    tensor; and whether int8 is kept to `int8_region` (netspec's rule, above) or covers every
    operation ONNX Runtime can quantize."""

    qdq: bool = True
    signed_activations: bool = False
    per_channel: bool = True
    region: bool = True

    @property
    def name(self) -> str:
        """`qdq-u8s8-channel+region`: the format in a benchmark's table."""
        layout = "qdq" if self.qdq else "qoperator"
        types = "s8s8" if self.signed_activations else "u8s8"
        scale = "channel" if self.per_channel else "tensor"
        return f"{layout}-{types}-{scale}{'+region' if self.region else ''}"


DEFAULT_INT8 = Int8Format()


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
    model: onnx.ModelProto,
    calibration: Mapping[str, npt.NDArray[np.float32]],
    form: Int8Format = DEFAULT_INT8,
) -> onnx.ModelProto:
    """Static int8 in format `form`, calibrated on `calibration` (one model-ready array per
    input). ONNX Runtime's quantizer logs its internals (tensor protos, per-channel axes of
    batch norms) as warnings: they are held back while it runs."""
    quiet = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        return _quantized(model, calibration, form)
    finally:
        logging.disable(quiet)


def _quantized(
    model: onnx.ModelProto, calibration: Mapping[str, npt.NDArray[np.float32]], form: Int8Format
) -> onnx.ModelProto:
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
        prepared = onnx.load(str(pre))
        _name_nodes(prepared.graph)
        onnx.save(prepared, str(pre))
        quantize_static(
            str(pre),
            str(out),
            reader,
            quant_format=QuantFormat.QDQ if form.qdq else QuantFormat.QOperator,
            activation_type=QuantType.QInt8 if form.signed_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=form.per_channel,
            nodes_to_exclude=fp32_nodes(prepared.graph) if form.region else [],
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={
                "ActivationSymmetric": form.signed_activations,
                "WeightSymmetric": True,
            },
        )
        return onnx.load(str(out))


def _name_nodes(graph: onnx.GraphProto) -> None:
    """Name every unnamed node (`quantize_static` excludes nodes by name)."""
    taken = {n.name for n in graph.node}
    for i, node in enumerate(graph.node):
        if not node.name:
            name = f"node_{i}"
            while name in taken:
                name += "_"
            node.name = name
            taken.add(name)


def fp32_nodes(graph: onnx.GraphProto) -> list[str]:
    """The names of the nodes outside `int8_region`: `quantize_static` leaves them fp32."""
    region = int8_region(graph)
    return [n.name for n in graph.node if n.name not in region]


def int8_region(graph: onnx.GraphProto) -> set[str]:
    """The names of the nodes to quantize: each convolution and dense layer that is not thin
    (`_thin`), and each operation that ONNX Runtime quantizes on a path between two of them
    (reachable from one, and reaching another, through such operations alone)."""
    quantizable = _quantizable_ops()
    weights = {t.name: tuple(t.dims) for t in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    producer: dict[str, onnx.NodeProto] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
        producer.update(dict.fromkeys(node.output, node))
    compute = [n for n in graph.node if n.op_type in COMPUTE_OPS and not _thin(n, weights)]

    def after(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [c for out in node.output for c in consumers.get(out, [])]

    def before(node: onnx.NodeProto) -> list[onnx.NodeProto]:
        return [producer[name] for name in node.input if name in producer]

    between = _reached(compute, after, quantizable) & _reached(compute, before, quantizable)
    return {n.name for n in compute} | between


def _reached(
    seeds: list[onnx.NodeProto],
    step: Callable[[onnx.NodeProto], list[onnx.NodeProto]],
    quantizable: frozenset[str],
) -> set[str]:
    """Names of the quantizable operations other than COMPUTE_OPS that `step` (consumers or
    producers) reaches from `seeds` through such operations alone."""
    seen: set[str] = set()
    todo = list(seeds)
    while todo:
        for node in step(todo.pop()):
            wanted = node.op_type in quantizable and node.op_type not in COMPUTE_OPS
            if wanted and node.name not in seen:
                seen.add(node.name)
                todo.append(node)
    return seen


def _quantizable_ops() -> frozenset[str]:
    """The operation types ONNX Runtime's quantizer quantizes (its default list)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return frozenset(QDQRegistry) | frozenset(QLinearOpsRegistry)


def _thin(node: onnx.NodeProto, weights: Mapping[str, tuple[int, ...]]) -> bool:
    """A convolution over one input channel (its weights: `(out, 1, kH, kW)`, one group)."""
    if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in weights:
        return False
    group = next((a.i for a in node.attribute if a.name == "group"), 1)
    dims = weights[node.input[1]]
    return group == 1 and len(dims) > 2 and dims[1] == 1


@dataclass(frozen=True)
class Int8Speed:
    """The fp32 and int8 files' median seconds per call on one batch, timed interleaved."""

    fp32_s: float
    int8_s: float
    batch: int
    threads: int

    @property
    def ratio(self) -> float:
        """int8's speed as a multiple of fp32's: above 1, int8 is the faster."""
        return self.fp32_s / self.int8_s if self.int8_s > 0 else math.inf

    def describe(self) -> str:
        """`1.62x the fp32 file's speed (batch 32, 2 threads, this CPU)`"""
        threads = f"{self.threads} thread{'s' * (self.threads != 1)}"
        return f"{self.ratio:.2f}x the fp32 file's speed (batch {self.batch}, {threads}, this CPU)"


def judge_int8_speed(speed: Int8Speed, minimum: float | None = None) -> str | None:
    """What to say of an int8 file's speed, decided from the two timings alone: raise
    ExportError when `minimum` is given and int8 runs under `minimum` times fp32's speed;
    else a warning when int8 is the slower; else nothing.

    >>> judge_int8_speed(Int8Speed(fp32_s=1.0, int8_s=0.5, batch=32, threads=2)) is None
    True
    >>> print(judge_int8_speed(Int8Speed(fp32_s=1.0, int8_s=2.0, batch=32, threads=2)))
    warning: the int8 file runs at 0.50x the fp32 file's speed (batch 32, 2 threads, this CPU): ...
    """
    if minimum is not None:
        if speed.fp32_s < minimum * speed.int8_s:
            raise ExportError(
                f"the int8 file runs at {speed.describe()}, under the {minimum:g}x asked for "
                "with --int8-min-speedup; nothing was written",
                hint="export fp32 (without --int8) for speed on this CPU, or lower "
                "--int8-min-speedup; int8 pays off on convolutions over many channels "
                "(docs/benchmarks.md, 'int8 on this CPU')",
            )
        return None
    if speed.ratio >= 1.0:
        return None
    return (
        f"warning: the int8 file runs at {speed.describe()}: fp32 is the faster here. It "
        "is still 4x smaller, and may be faster on another CPU; pass --int8-min-speedup 1 "
        "to refuse such a file"
    )


def time_int8(
    fp32: bytes, int8: bytes, inputs: Mapping[str, npt.NDArray[np.float32]], threads: int
) -> Int8Speed:
    """Median seconds per call of each serialized model on `inputs`: one warm-up call each,
    then SPEED_ROUNDS rounds interleaved (A B, B A, ...; at least 3 past SPEED_BUDGET_S), with
    the session options `netspec run` uses, at `threads`, and no idle spinning (one
    session's spinning threads would take the cores of the other's call)."""
    import onnxruntime as ort

    from netspec.runtime.session import session_options

    sessions = [
        ort.InferenceSession(
            m, session_options(threads, spin=False), providers=["CPUExecutionProvider"]
        )
        for m in (fp32, int8)
    ]
    feed = dict(inputs)
    times: tuple[list[float], list[float]] = ([], [])
    for session in sessions:
        session.run(None, feed)
    start = time.perf_counter()
    for r in range(SPEED_ROUNDS):
        for k in (0, 1) if r % 2 == 0 else (1, 0):
            began = time.perf_counter()
            sessions[k].run(None, feed)
            times[k].append(time.perf_counter() - began)
        if r >= 2 and time.perf_counter() - start > SPEED_BUDGET_S:
            break
    rows = len(next(iter(feed.values())))
    return Int8Speed(float(np.median(times[0])), float(np.median(times[1])), rows, threads)


def int8_checked(
    fp32: onnx.ModelProto,
    samples: npt.NDArray[np.float32],
    names: Sequence[str],
    batch: int | None,
    minimum: float | None,
    log: Callable[[str], None],
) -> tuple[onnx.ModelProto, Int8Speed]:
    """`fp32` quantized (DEFAULT_INT8) on `samples` (fed to every input in `names`), timed
    against `fp32` on a calibration batch (`batch` rows for a fixed-batch model) with the
    threads netspec chooses; the speed logged, then judged (`judge_int8_speed`)."""
    from netspec.threads import choose_threads

    int8 = to_int8(fp32, dict.fromkeys(names, samples))
    rows = np.resize(samples, (batch, *samples.shape[1:])) if batch else samples[:CALIBRATION_BATCH]
    chosen = choose_threads(quick=True)
    speed = time_int8(
        fp32.SerializeToString(),
        int8.SerializeToString(),
        dict.fromkeys(names, rows),
        chosen.threads,
    )
    log(f"int8 speed: {speed.describe()}; {chosen.describe()}")
    warning = judge_int8_speed(speed, minimum)
    if warning is not None:
        log(warning)
    return int8, speed
