"""Check an exported file against the PyTorch module it came from.

fp32 must match within `rtol`/`atol` on random inputs and on real samples, and both sides
must be finite: a NaN or Inf in PyTorch's or ONNX Runtime's output fails the check by name
(a NaN compares as no error at all, so it is looked for first). fp16 and
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

from netspec.artifact import SCORES, OutputKind, predicted_class
from netspec.errors import ExportError
from netspec.runtime.batching import padded, run_batched

if TYPE_CHECKING:
    import onnx
    import onnxruntime as ort
    import torch

Log = Callable[[str], None]
Arrays = list[npt.NDArray[np.float32]]
RTOL, ATOL = 1e-3, 1e-5
REL_FLOOR = 1e-3  # relative error is reported where |reference| exceeds this
TIMING_ROUNDS = 7
MAP_AGREEMENT = 0.05  # fp16/int8 maps agree when every value is this close (of the range)


@dataclass(frozen=True)
class Agreement:
    """fp32 ONNX Runtime against PyTorch on one set of inputs."""

    where: str
    max_abs: float
    max_rel: float
    ok: bool
    nonfinite: str | None = None  # "PyTorch's output has NaN", when one side is not finite
    atol: float = ATOL  # the absolute tolerance applied (ATOL, scaled by the output's size)

    def summary(self) -> str:
        """The log line's verdict: the errors, or what is not finite."""
        if self.nonfinite is not None:
            return f"{self.nonfinite}: FAILED"
        return (
            f"max abs err {self.max_abs:.3g}, max rel err {self.max_rel:.3g} "
            f"(rtol {RTOL:g}, atol {self.atol:.3g}): {'ok' if self.ok else 'FAILED'}"
        )

    def failure(self) -> str:
        """Why the check failed, for the ExportError."""
        if self.nonfinite is not None:
            return (
                f"cannot verify on {self.where}: {self.nonfinite}; the network's output "
                "must be finite (check operations that can overflow or take roots of "
                "negative numbers, e.g. lppool with an odd p)"
            )
        return (
            f"ONNX Runtime disagrees with PyTorch on {self.where}: max abs err "
            f"{self.max_abs:.3g}, max rel err {self.max_rel:.3g} (allowed rtol {RTOL:g}, "
            f"atol {self.atol:.3g})"
        )


@dataclass(frozen=True)
class ReducedCheck:
    """An fp16 or int8 file against fp32: top-1 agreement, accuracy, speed."""

    precision: str
    samples: int
    agreement: float  # fraction of samples whose top-1 class (a map: values) agrees with fp32
    max_abs: float
    accuracy_fp32: float | None  # where the true classes are known
    accuracy: float | None
    speedup: float  # fp32 ONNX Runtime time / this file's time, same inputs


def open_session(path: str | Path | bytes) -> ort.InferenceSession:
    """A quiet CPU session on a file (or on a serialized model), its idle threads not
    spinning: sessions timed in turn (`_speedup`) would otherwise take each other's cores,
    which made int8 read as 0.05x fp32 on 2 busy cores where it was 0.9x."""
    import onnxruntime as ort

    from netspec.runtime.session import session_options

    options = session_options(spin=False)  # as `netspec run` opens it, without spinning
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


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


def nonfinite(arrays: Arrays, who: str) -> str | None:
    """`"PyTorch's output has 3 NaN"` when an output holds NaN or Inf, else None."""
    for a in arrays:
        nan, inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
        if nan or inf:
            found = " and ".join(f"{n} {w}" for n, w in ((nan, "NaN"), (inf, "Inf")) if n)
            return f"{who}'s output has {found}"
    return None


def compare(got: Arrays, want: Arrays, where: str) -> Agreement:
    """Max absolute and relative errors, and whether all are within RTOL and the absolute
    tolerance, and finite. The absolute tolerance is ATOL times the output's largest
    magnitude (at least 1): float32 sums in another order differ by an amount that scales
    with the values summed, not with the result, so a value that ends near zero (a box's
    edge at x = 0.02 of a 128-pixel scene, cx - w/2) carries the rounding of its operands."""
    bad = nonfinite(want, "PyTorch") or nonfinite(got, "ONNX Runtime")
    if bad is not None:
        return Agreement(where, float("nan"), float("nan"), False, bad)
    max_abs = max_rel = 0.0
    atol = ATOL
    ok = True
    for g, w in zip(got, want, strict=True):
        if g.shape != w.shape:
            return Agreement(where, float("inf"), float("inf"), False)
        diff = np.abs(g.astype(np.float64) - w.astype(np.float64))
        big = np.abs(w) > REL_FLOOR
        scaled = ATOL * max(1.0, float(np.abs(w).max(initial=0.0)))
        atol = max(atol, scaled)
        max_abs = max(max_abs, float(diff.max(initial=0.0)))
        max_rel = max(max_rel, float((diff[big] / np.abs(w[big])).max(initial=0.0)))
        ok = ok and bool(np.all(diff <= scaled + RTOL * np.abs(w)))
    return Agreement(where, max_abs, max_rel, ok, atol=atol)


def check_fp32(
    module: torch.nn.Module,
    path: str | Path,
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
        want = run_batched(torch_fn(module), inputs, fixed=batch)
        got = run_batched(ort_fn(session), inputs, fixed=batch)
        result = compare(got, want, where)
        log(f"verify ({where}): {result.summary()}")
        results.append(result)
    return results


def check_reduced(
    module: torch.nn.Module,
    path: str | Path,
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
    want = run_batched(torch_fn(module), inputs, fixed=batch)[0]
    got = run_batched(ort_fn(reduced), inputs, fixed=batch)[0]
    bad = nonfinite([want], "PyTorch") or nonfinite([got], f"the {precision} file")
    if bad is not None:
        raise ExportError(f"cannot check the {precision} file against PyTorch: {bad}")
    acc32 = acc = None
    if kind in SCORES:
        p_want, p_got = predicted_class(want, kind), predicted_class(got, kind)
        agreement = float(np.mean(p_want == p_got))
        if targets is not None and len(targets) == len(p_got):
            acc32, acc = float(np.mean(p_want == targets)), float(np.mean(p_got == targets))
    else:
        agreement = values_agree(got, want)
    speedup = _speedup(ort_fn(reference), ort_fn(reduced), inputs, batch)
    result = ReducedCheck(
        precision,
        len(got),
        agreement,
        float(np.abs(got - want).max(initial=0.0)),
        acc32,
        acc,
        speedup,
    )
    log(_describe(result, kind))
    return result


def values_agree(got: npt.NDArray[Any], want: npt.NDArray[Any]) -> float:
    """The fraction of samples (a map, a tensor) whose every value is within MAP_AGREEMENT
    of the fp32 sample's range: what "the same prediction" means where there is no class.

    >>> float(values_agree(np.array([[0.0, 1.0], [0.0, 1.5]]), np.array([[0.0, 1.0], [0.0, 1.0]])))
    0.5
    """
    got, want = got.reshape(len(got), -1), want.reshape(len(want), -1)
    spread = np.maximum(want.max(axis=1) - want.min(axis=1), 1e-12)
    worst = np.abs(got - want).max(axis=1, initial=0.0) / spread
    return float(np.mean(worst <= MAP_AGREEMENT))


def _describe(r: ReducedCheck, kind: OutputKind) -> str:
    agrees = (
        "top-1 agrees with fp32 on"
        if kind in SCORES
        else f"every value within {MAP_AGREEMENT:.0%} of fp32's range on"
    )
    text = (
        f"{r.precision} on {r.samples} inputs: {agrees} "
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
    feed = [x[:rows] if batch is None else padded(x[:rows], batch) for x in inputs]
    times: dict[int, list[float]] = {0: [], 1: []}
    fns = (base, new)
    for r in range(TIMING_ROUNDS + 1):
        for k in (0, 1) if r % 2 else (1, 0):
            start = time.perf_counter()
            fns[k](feed)
            if r:  # the first round warms both up
                times[k].append(time.perf_counter() - start)
    return float(np.median(times[0]) / max(np.median(times[1]), 1e-12))
