"""Latency and throughput of an exported model, and of PyTorch eager on the same weights.

Engines are timed interleaved (A, B, B, A, ...) within one process, so drift in the
machine's speed (frequency, other load) falls on both alike. PyTorch's module is rebuilt
from the spec in the file's metadata, and its weights are copied from the file's
initializers by name.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import ModelInfo
from netspec.errors import ModelError
from netspec.runtime.session import Model
from netspec.text import UNBOUND_SIZE

if TYPE_CHECKING:
    import torch

Runner = Callable[[], object]
TARGET_SECONDS = 1.5  # per engine and batch size
MIN_ITERS, MAX_ITERS, WARMUP = 10, 2000, 3


@dataclass(frozen=True)
class Timing:
    engine: str
    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    iters: int

    @property
    def throughput(self) -> float:
        """Samples per second at the median latency."""
        return self.batch / (self.p50_ms / 1000.0)

    def to_json(self) -> dict[str, Any]:
        return asdict(self) | {"throughput": self.throughput}


def summarize(engine: str, batch: int, seconds: Sequence[float]) -> Timing:
    ms = np.asarray(seconds) * 1000.0
    p50, p90, p99 = (float(np.percentile(ms, q)) for q in (50, 90, 99))
    return Timing(engine, batch, p50, p90, p99, len(ms))


def interleaved(
    runners: Mapping[str, Runner], iters: int, warmup: int = WARMUP
) -> dict[str, list[float]]:
    """Seconds per call of each runner, alternating the order every round."""
    names = list(runners)
    for _ in range(warmup):
        for name in names:
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for i in range(iters):
        for name in names if i % 2 == 0 else reversed(names):
            start = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - start)
    return times


def iterations(runners: Mapping[str, Runner]) -> int:
    """Enough rounds to spend about TARGET_SECONDS on each engine, from one timed call each."""
    slowest = 0.0
    for run in runners.values():
        run()  # first call: allocations, lazy initialization
        start = time.perf_counter()
        run()
        slowest = max(slowest, time.perf_counter() - start)
    return int(min(MAX_ITERS, max(MIN_ITERS, TARGET_SECONDS / max(slowest, 1e-6))))


def random_inputs(info: ModelInfo, batch: int, seed: int = 0) -> list[npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal(
            (batch, *(d if isinstance(d, int) else UNBOUND_SIZE for d in i.shape))
        ).astype(np.float32)
        for i in info.inputs
    ]


def ort_runner(model: Model, inputs: list[npt.NDArray[np.float32]]) -> Runner:
    feeds = dict(zip(model.input_names, inputs, strict=True))
    session = model.session
    return lambda: session.run(None, feeds)


def torch_runner(module: torch.nn.Module, inputs: list[npt.NDArray[np.float32]]) -> Runner:
    import torch

    tensors = [torch.from_numpy(x) for x in inputs]

    def run() -> object:
        with torch.inference_mode():
            return module(*tensors)

    return run


def torch_module(path: Path, info: ModelInfo) -> torch.nn.Module:
    """PyTorch eager on the file's weights: the spec rebuilt, initializers copied by name."""
    import onnx
    import torch
    from onnx import numpy_helper

    import netspec
    from netspec.diagnostics import SpecError
    from netspec.errors import UsageError
    from netspec.lower import to_torch

    if info.precision == "int8" or not info.weights:
        raise ModelError(
            f"{path}: an {info.precision} file keeps no fp32 weights by name; "
            "benchmark the fp32 export with --vs torch"
        )
    try:
        sizes: dict[str, Any] = dict(info.sizes)
        compiled = netspec.compile_text(info.spec, f"{path}:spec", info.network, **sizes)
    except (SpecError, UsageError) as e:
        raise ModelError(f"{path}: the spec in its metadata no longer compiles ({e})") from None
    module = to_torch(compiled).eval()
    stored = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    state = module.state_dict()
    for name, tensor in state.items():
        source = stored.get(info.weights.get(name, ""))
        if source is None:
            raise ModelError(f"{path}: no initializer for weight '{name}'")
        value = torch.from_numpy(numpy_helper.to_array(source).astype(np.float32))
        if value.shape != tensor.shape:
            raise ModelError(
                f"{path}: weight '{name}' is {tuple(value.shape)} in the file but "
                f"{tuple(tensor.shape)} in the spec rebuilt from its metadata"
            )
        state[name] = value
    module.load_state_dict(state)
    return module


def bench(
    model: Model,
    batches: Sequence[int],
    vs_torch: bool = False,
    threads: int | None = None,
    rounds: int | None = None,
) -> list[Timing]:
    """Timings per batch size: ONNX Runtime, and PyTorch eager when `vs_torch`; `rounds`
    timed calls of each (default: about TARGET_SECONDS per engine)."""
    import torch

    module = torch_module(model.path, model.info) if vs_torch else None
    if threads:
        torch.set_num_threads(threads)
    results: list[Timing] = []
    for batch in batches:
        inputs = random_inputs(model.info, batch)
        runners = {"onnxruntime": ort_runner(model, inputs)}
        if module is not None:
            runners["torch"] = torch_runner(module, inputs)
        times = interleaved(runners, rounds or iterations(runners))
        results += [summarize(name, batch, t) for name, t in times.items()]
    return results


def speedups(timings: Sequence[Timing]) -> dict[int, float]:
    """ONNX Runtime's throughput over PyTorch's, per batch size (median latencies)."""
    by = {(t.engine, t.batch): t for t in timings}
    return {
        b: by[("torch", b)].p50_ms / by[("onnxruntime", b)].p50_ms
        for (engine, b) in by
        if engine == "torch"
    }
