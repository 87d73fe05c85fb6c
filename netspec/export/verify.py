"""Check an exported file against the PyTorch module it came from.

fp32 must match within `rtol`/`atol` on random inputs and on real samples. fp16 and
int8 are not expected to match bit for bit: they report how often their top-1 class
agrees with fp32 PyTorch, the accuracy change where the true classes are known, and
their speed against the fp32 file.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import OutputKind

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

Log = Callable[[str], None]
Arrays = list[npt.NDArray[np.float32]]
RTOL, ATOL = 1e-3, 1e-5
REL_FLOOR = 1e-3  # relative error is reported where |reference| exceeds this
CHUNK = 256  # samples per run when the batch axis is dynamic
TIMING_ROUNDS = 7


@dataclass(frozen=True)
class Agreement:
    """fp32 ONNX Runtime against PyTorch on one set of inputs."""

    where: str
    max_abs: float
    max_rel: float
    ok: bool


@dataclass(frozen=True)
class ReducedCheck:
    """An fp16 or int8 file against fp32: top-1 agreement, accuracy, speed."""

    precision: str
    samples: int
    agreement: float  # fraction of samples whose top-1 class equals fp32 PyTorch's
    max_abs: float
    accuracy_fp32: float | None  # where the true classes are known
    accuracy: float | None
    speedup: float  # fp32 ONNX Runtime time / this file's time, same inputs


def open_session(path: Path | bytes) -> ort.InferenceSession:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    model = str(path) if isinstance(path, Path) else path
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _chunks(n: int, batch: int | None) -> list[slice]:
    size = batch or CHUNK
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def _padded(array: npt.NDArray[np.float32], batch: int | None) -> npt.NDArray[np.float32]:
    """A static-batch model takes exactly `batch` rows: repeat the last to fill a short chunk."""
    if batch is None or len(array) == batch:
        return array
    return np.concatenate([array, np.repeat(array[-1:], batch - len(array), axis=0)])


def run_batched(fn: Callable[[Arrays], Arrays], inputs: Arrays, batch: int | None) -> Arrays:
    """Run `fn` over `inputs` in chunks (of exactly `batch` when the model's batch is fixed)."""
    parts: list[Arrays] = []
    for part in _chunks(len(inputs[0]), batch):
        n = part.stop - part.start
        outs = fn([_padded(x[part], batch) for x in inputs])
        parts.append([o[:n] for o in outs])
    return [np.concatenate(col) for col in zip(*parts, strict=True)]


def torch_fn(module: torch.nn.Module) -> Callable[[Arrays], Arrays]:
    import torch

    def run(arrays: Arrays) -> Arrays:
        with torch.no_grad():
            out = module(*(torch.from_numpy(np.ascontiguousarray(a)) for a in arrays))
        outs = out if isinstance(out, tuple | list) else (out,)
        return [o.detach().numpy().astype(np.float32) for o in outs]

    return run


def ort_fn(session: ort.InferenceSession) -> Callable[[Arrays], Arrays]:
    names = [i.name for i in session.get_inputs()]

    def run(arrays: Arrays) -> Arrays:
        result: list[Any] = session.run(None, dict(zip(names, arrays, strict=True)))
        return [np.asarray(o, np.float32) for o in result]

    return run


def compare(got: Arrays, want: Arrays, where: str) -> Agreement:
    """Max absolute and relative errors, and whether all are within RTOL/ATOL."""
    max_abs = max_rel = 0.0
    ok = True
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape:
            return Agreement(where, float("inf"), float("inf"), False)
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        big = np.abs(w) > REL_FLOOR
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float((diff[big] / np.abs(w[big])).max(initial=0.0)))
        ok = ok and bool(np.all(diff <= ATOL + RTOL * np.abs(w)))
    return Agreement(where, max_abs, max_rel, ok)


def check_fp32(
    module: torch.nn.Module,
    path: Path,
    random_inputs: Arrays,
    sample_inputs: Arrays | None,
    batch: int | None,
    log: Log,
) -> list[Agreement]:
    """ONNX Runtime against PyTorch on random inputs and, when given, real samples."""
    session = open_session(path)
    sets = [("random inputs", random_inputs)]
    if sample_inputs is not None:
        sets.append((f"{len(sample_inputs[0])} samples", sample_inputs))
    results = []
    for where, inputs in sets:
        want = run_batched(torch_fn(module), inputs, batch)
        got = run_batched(ort_fn(session), inputs, batch)
        result = compare(got, want, where)
        log(
            f"verify ({where}): max abs err {result.max_abs:.3g}, max rel err "
            f"{result.max_rel:.3g} (rtol {RTOL:g}, atol {ATOL:g}): "
            f"{'ok' if result.ok else 'FAILED'}"
        )
        results.append(result)
    return results


def predictions(output: npt.NDArray[np.float32], kind: OutputKind) -> npt.NDArray[np.int64]:
    """Top-1 class per sample: the nearest prototype for RBF distances, else the largest."""
    flat = output.reshape(len(output), -1)
    if kind == "sigmoid" and flat.shape[1] == 1:
        return (flat[:, 0] > 0.5).astype(np.int64)
    chosen: npt.NDArray[np.int64] = (
        flat.argmin(axis=1) if kind == "rbf_distances" else flat.argmax(axis=1)
    ).astype(np.int64)
    return chosen


def check_reduced(
    module: torch.nn.Module,
    path: Path,
    fp32: onnx.ModelProto,
    inputs: Arrays,
    targets: npt.NDArray[np.int64] | None,
    kind: OutputKind,
    precision: str,
    batch: int | None,
    log: Log,
) -> ReducedCheck:
    """Top-1 agreement with fp32 PyTorch, accuracy where `targets` are given, and speed."""
    reduced = open_session(path)
    reference = open_session(fp32.SerializeToString())
    want = run_batched(torch_fn(module), inputs, batch)[0]
    got = run_batched(ort_fn(reduced), inputs, batch)[0]
    p_want, p_got = predictions(want, kind), predictions(got, kind)
    agreement = float(np.mean(p_want == p_got))
    acc32 = acc = None
    if targets is not None and len(targets) == len(p_got):
        acc32, acc = float(np.mean(p_want == targets)), float(np.mean(p_got == targets))
    speedup = _speedup(ort_fn(reference), ort_fn(reduced), inputs, batch)
    result = ReducedCheck(
        precision,
        len(p_got),
        agreement,
        float(np.abs(got - want).max(initial=0.0)),
        acc32,
        acc,
        speedup,
    )
    log(_describe(result))
    return result


def _describe(r: ReducedCheck) -> str:
    text = (
        f"{r.precision} on {r.samples} inputs: top-1 agrees with fp32 on "
        f"{100 * r.agreement:.2f}%, max abs diff {r.max_abs:.3g}"
    )
    if r.accuracy is not None and r.accuracy_fp32 is not None:
        text += (
            f"; accuracy {100 * r.accuracy:.2f}% vs fp32 {100 * r.accuracy_fp32:.2f}% "
            f"({100 * (r.accuracy - r.accuracy_fp32):+.2f} points)"
        )
    return text + f"; {r.speedup:.2f}x the fp32 file's speed (ONNX Runtime, this CPU)"


def _speedup(
    base: Callable[[Arrays], Arrays],
    new: Callable[[Arrays], Arrays],
    inputs: Arrays,
    batch: int | None,
) -> float:
    """Median time ratio over interleaved runs (A, B, B, A, ...) on up to 64 samples."""
    rows = batch or min(64, len(inputs[0]))
    feed = [_padded(x[:rows], batch) for x in inputs]
    times: dict[int, list[float]] = {0: [], 1: []}
    fns = (base, new)
    for r in range(TIMING_ROUNDS + 1):
        for k in (0, 1) if r % 2 else (1, 0):
            start = time.perf_counter()
            fns[k](feed)
            if r:  # the first round warms both up
                times[k].append(time.perf_counter() - start)
    return float(np.median(times[0]) / max(np.median(times[1]), 1e-12))
