"""Latency and throughput of an exported model, and of any other engine on the same inputs.

Engines are timed interleaved (A, B, B, A, ...) within one process, so drift in the
machine's speed (frequency, other load) falls on both alike. This module runs ONNX
Runtime only; another engine comes in as a function that makes its runner from the
inputs (PyTorch eager: netspec.export.eager), so the runtime never imports torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

# numpy loads numpy.random lazily; load it here, before `netspec bench` says it has started,
# so that a Ctrl-C while it times cannot land inside a C extension's import (an ImportError)
import numpy.random
import numpy.typing as npt

from netspec.artifact import ModelInfo
from netspec.runtime.batching import run_failure
from netspec.runtime.session import Model
from netspec.text import bound_shape

Runner = Callable[[], object]
Inputs = list[npt.NDArray[np.float32]]
RunnerMaker = Callable[[Inputs], Runner]  # another engine's runner on these inputs
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


def random_inputs(info: ModelInfo, batch: int, seed: int = 0) -> Inputs:
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((batch, *bound_shape(i.shape))).astype(np.float32) for i in info.inputs
    ]


def ort_runner(model: Model, inputs: Inputs) -> Runner:
    feeds = dict(zip(model.input_names, inputs, strict=True))
    session = model.session

    def run() -> object:
        try:
            return session.run(None, feeds)
        except Exception as e:  # ONNX Runtime's own error types, as `run` reports them
            raise run_failure(model, inputs[0], e) from None

    return run


def bench(
    model: Model,
    batches: Sequence[int],
    others: Mapping[str, RunnerMaker] | None = None,
    rounds: int | None = None,
) -> list[Timing]:
    """Timings per batch size of ONNX Runtime and of each engine in `others` (by name);
    `rounds` timed calls of each (default: about TARGET_SECONDS per engine)."""
    results: list[Timing] = []
    for batch in batches:
        inputs = random_inputs(model.info, batch)
        runners = {"onnxruntime": ort_runner(model, inputs)}
        runners |= {name: make(inputs) for name, make in (others or {}).items()}
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
