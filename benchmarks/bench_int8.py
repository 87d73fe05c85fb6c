"""int8 on this CPU: netspec's int8 files, and the formats ONNX Runtime offers, side by side
against fp32, on every spec in specs/ with a convolution into 32 or more channels; then
int8's accuracy on MNIST-trained networks.

The issue's goal (1.5x fp32) is for the specs with a convolution over 32 or more channels
into 32 or more (GOAL_CHANNELS on both sides: depthwise ones count); the others (a first
convolution over one channel, then 6 to 16 maps) are measured and listed apart.

For each spec: its fp32 file (fresh weights; 224x224 networks at 112x112 so that batch 32
stays short, unet at its fixed 572x572 and batch 1 only), quantized in each format
(netspec.export.quantize.Int8Format: QDQ or QOperator, U8S8 or S8S8, weights per channel or
per tensor; int8 kept to netspec's region, or on every operation ONNX Runtime quantizes),
calibrated on 32 samples (MNIST test digits for a 1x28x28 input, else seeded normal noise).
Each file runs in an ONNX Runtime session with `netspec run`'s options (all graph
optimizations, which include the NHWC layout for int8, QDQ propagation off) at `--threads`,
idle threads not spinning; the default also in a plain session (QDQ propagation on, as
another program would open it), and with `--formats all`, fp32 and the default without the
NHWC layout (optimization level "extended"). All sessions of a spec are timed interleaved
(the order reversed every other round) at batch 1 and 32, for about `--budget` seconds
each (5 to 61 rounds). The table gives fp32's median wall ms per call, and each int8 file's
speed as a multiple of fp32's by median wall time and, in brackets, by median CPU time per
call (the process's, all threads), which the other jobs on a shared machine disturb much less.

Accuracy: `netspec train SPEC --epochs 1` (lenet, mnist_fast), then the int8 file exported
from the run's weights (the default format, calibrated on 1000 training digits), scored
against fp32 on the 10,000 test digits. The results replace the section
`## int8 on this CPU` of docs/benchmarks.md.

    nice .venv/bin/python benchmarks/bench_int8.py [--specs a,b] [--formats all|default]
        [--threads 2] [--budget 4] [--no-accuracy] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from docsection import replace_section  # benchmarks/, beside this script
from machine import cpu_model, load_average  # benchmarks/, beside this script

import netspec
from netspec.compiler import Compiled
from netspec.data import load_idx_pair
from netspec.errors import NetspecError
from netspec.export import ExportOptions, export_compiled
from netspec.export.quantize import DEFAULT_INT8, Int8Format, to_int8
from netspec.runtime.session import session_options

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
MNIST = ROOT.parent / "shared" / "data" / "mnist"
DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## int8 on this CPU"
MIN_CHANNELS = 32  # measured: specs with a convolution into this many channels
GOAL_CHANNELS = 32  # the goal: specs with a convolution this wide on both sides
GOAL = 1.5
SMALLER = {  # input side used instead of the spec's (global pooling or dense takes any size)
    "alexnet": 115,
    "convnext_t": 112,
    "mobilenet_v3_small": 112,
    "shufflenet_v2": 112,
    "densenet121": 112,
    "efficientnet_b0": 112,
    "googlenet": 112,
    "mobilenet_v2": 112,
    "resnet152": 112,
    "resnet18": 112,
    "resnet50": 112,
    "se_resnet": 112,
    "vgg16": 112,
    "zfnet": 112,
}
BOUND = {"filters": {"H": 24, "W": 20}, "espcn": {"H": 64, "W": 64}}  # symbolic sizes
BATCH_ONE_ONLY = {"unet"}  # 150 GMAC per 572x572 image, its crops fix the size
ORT_FORMATS = [  # as ONNX Runtime makes them, thin convolutions quantized too
    Int8Format(region=False),
    Int8Format(per_channel=False, region=False),
    Int8Format(signed_activations=True, region=False),
    Int8Format(qdq=False, region=False),
    Int8Format(qdq=False, signed_activations=True, region=False),
]
NO_NHWC = " no-nhwc"  # a session name's suffix: optimization level "extended"
PLAIN = " plain"  # a session name's suffix: ONNX Runtime's defaults (QDQ propagation on)
ACCURACY_SPECS = ("lenet", "mnist_fast")
MIN_ROUNDS, MAX_ROUNDS = 5, 61
MEAN, STD = 0.1307, 0.3081


@dataclass(frozen=True)
class Row:
    spec: str
    shape: str
    batch: int
    fp32_ms: float
    ratios: dict[str, float]  # session name -> fp32's median wall time / its own
    cpu_ratios: dict[str, float]  # the same, of the process's CPU time per call
    load: str


def wide_specs(skipped: list[str]) -> tuple[list[str], set[str]]:
    """Specs with a convolution into MIN_CHANNELS or more channels, and those of them the
    goal is for: a convolution over GOAL_CHANNELS or more into as many (one that does not
    compile is added to `skipped`)."""
    wide, goal = [], set()
    for path in sorted(SPECS.glob("*.net")):
        try:
            compiled = netspec.compile(path, **BOUND.get(path.stem, {}))
        except NetspecError as e:
            skipped.append(f"{path.stem} (does not compile: {str(e).splitlines()[0][:80]})")
            continue
        sides = [
            (x.in_shapes[0][0] if x.in_shapes else 0, x.shape[0])
            for x in compiled.layers
            if x.op == "conv"
        ]
        known = [(i, o) for i, o in sides if isinstance(i, int) and isinstance(o, int)]
        if any(o >= MIN_CHANNELS for _, o in known):
            wide.append(path.stem)
        if any(min(i, o) >= GOAL_CHANNELS for i, o in known):
            goal.add(path.stem)
    return wide, goal


def compiled_at(spec: str) -> Compiled:
    """The spec, its first input's side set to SMALLER's where it has one."""
    text = (SPECS / f"{spec}.net").read_text(encoding="utf-8")
    if spec in SMALLER:
        side = SMALLER[spec]
        text = re.sub(r"(network \w+\(\w+: \d+x)\d+x\d+", rf"\g<1>{side}x{side}", text, count=1)
    return netspec.compile(text, **BOUND.get(spec, {}))


def samples(compiled: Compiled, n: int) -> np.ndarray:
    """`n` model-ready samples: MNIST test digits for 1x28x28, else seeded normal noise."""
    shape = tuple(compiled.graph.inputs[0].shape)
    if shape == (1, 28, 28) and MNIST.is_dir():
        pair = load_idx_pair(
            MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
        )
        x = pair.images[:n, None].astype(np.float32) / 255.0
        return ((x - MEAN) / STD).astype(np.float32)
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, *shape)).astype(np.float32)  # type: ignore[arg-type]


def fp32_model(compiled: Compiled, tmp: Path) -> onnx.ModelProto:
    out = tmp / f"{compiled.name}.onnx"
    export_compiled(compiled, out, ExportOptions(verify=False), log=lambda _: None)
    return onnx.load(str(out))


def session(model: bytes, threads: int, suffix: str = "") -> ort.InferenceSession:
    """`netspec run`'s session; with NO_NHWC at level "extended"; with PLAIN as ONNX
    Runtime's defaults (QDQ propagation on), at the same threads, not spinning."""
    options = session_options(threads, spin=False)
    if suffix == NO_NHWC:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    if suffix == PLAIN:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def measure(
    spec: str, formats: list[Int8Format], threads: int, budget: float, no_nhwc: bool
) -> list[Row]:
    """One spec: every format's file timed against fp32, interleaved, per batch, for about
    `budget` seconds a batch (`rounds`)."""
    compiled = compiled_at(spec)
    x = samples(compiled, 32)
    names = [i.name for i in compiled.graph.inputs]
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = fp32_model(compiled, Path(tmp))
    calibration = dict.fromkeys(names, x if spec not in BATCH_ONE_ONLY else x[:1])
    files = {"fp32": fp32.SerializeToString()}
    files |= {f.name: to_int8(fp32, calibration, f).SerializeToString() for f in formats}
    sessions = {name: session(model, threads) for name, model in files.items()}
    sessions[DEFAULT_INT8.name + PLAIN] = session(files[DEFAULT_INT8.name], threads, PLAIN)
    for name in ("fp32", DEFAULT_INT8.name) if no_nhwc else ():
        sessions[name + NO_NHWC] = session(files[name], threads, NO_NHWC)
    rows = []
    shape = "x".join(str(d) for d in compiled.graph.inputs[0].shape)
    for batch in (1,) if spec in BATCH_ONE_ONLY else (1, 32):
        feed = {n: np.resize(x, (batch, *x.shape[1:])) for n in names}
        load = load_average()
        runners = {k: (lambda s=s, f=feed: s.run(None, f)) for k, s in sessions.items()}
        wall, cpu = timed(runners, rounds(runners, budget))
        ratios, cpu_ratios = (
            {k: t["fp32"] / v for k, v in t.items() if k != "fp32"} for t in (wall, cpu)
        )
        rows.append(Row(spec, shape, batch, wall["fp32"] * 1000, ratios, cpu_ratios, load))
    return rows


def timed(
    runners: dict[str, Callable[[], object]], rounds: int
) -> tuple[dict[str, float], dict[str, float]]:
    """Median wall and CPU seconds per call of each runner over `rounds` rounds, the order
    reversed every other round. CPU time (the process's, all its threads; no session spins)
    is what a call costs whoever else runs: on this shared machine wall times of one file
    vary by a third from round to round, its CPU times much less."""
    wall: dict[str, list[float]] = {k: [] for k in runners}
    cpu: dict[str, list[float]] = {k: [] for k in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            began, began_cpu = time.perf_counter(), time.process_time()
            runners[name]()
            cpu[name].append(time.process_time() - began_cpu)
            wall[name].append(time.perf_counter() - began)
    return (
        {k: float(np.median(v)) for k, v in wall.items()},
        {k: float(np.median(v)) for k, v in cpu.items()},
    )


def rounds(runners: dict[str, Callable[[], object]], budget: float) -> int:
    """Interleaved rounds that fit `budget` seconds, from one timed call of each (after a
    first, untimed one): at least MIN_ROUNDS, at most MAX_ROUNDS."""
    seconds = 0.0
    for run in runners.values():
        run()
        began = time.perf_counter()
        run()
        seconds += time.perf_counter() - began
    return max(MIN_ROUNDS, min(MAX_ROUNDS, int(budget / max(seconds, 1e-9))))


@dataclass(frozen=True)
class Accuracy:
    spec: str
    fp32: float
    int8: float
    agreement: float
    speedup: float  # the export's own check, at the calibration batch
    train_s: float


def accuracy(spec: str, threads: int) -> Accuracy:
    """Train one epoch, export fp32 and int8 (the default format) from the run's weights;
    score both on the 10,000 MNIST test digits."""
    from netspec.train.opening import open_target

    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "netspec", "train", str(SPECS / f"{spec}.net"), "--epochs",
             "1", "--out", tmp, "--name", spec, "--threads", str(threads)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        train_s = time.perf_counter() - began
        opened = open_target(Path(tmp) / spec)
        module = opened.module(lambda _: None)
        test = load_idx_pair(
            MNIST / "t10k-images-idx3-ubyte.gz", MNIST / "t10k-labels-idx1-ubyte.gz"
        )
        train = load_idx_pair(
            MNIST / "train-images-idx3-ubyte.gz", MNIST / "train-labels-idx1-ubyte.gz"
        )
        x = ((test.images[:, None].astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)
        cal = train.images[:1000, None].astype(np.float32) / 255.0
        report = export_compiled(
            opened.compiled,
            Path(tmp) / "int8.onnx",
            ExportOptions(precision="int8"),
            weights=module,
            samples=x,
            targets=test.labels,
            calibration=((cal - MEAN) / STD).astype(np.float32),
            log=lambda _: None,
        )
    reduced, speed = report.reduced, report.int8_speed
    assert reduced is not None and reduced.accuracy is not None and speed is not None
    assert reduced.accuracy_fp32 is not None
    return Accuracy(
        spec, reduced.accuracy_fp32, reduced.accuracy, reduced.agreement, speed.ratio, train_s
    )


def table(rows: list[Row], columns: list[str]) -> list[str]:
    head = "| spec (input) | batch | fp32 ms | " + " | ".join(columns) + " |"
    lines = [head, "|---|---:|---:|" + "---:|" * len(columns)]
    for r in rows:
        cells = [
            f"{r.ratios[c]:.2f}x ({r.cpu_ratios[c]:.2f}x)" if c in r.ratios else "–"
            for c in columns
        ]
        lines.append(
            f"| {r.spec} ({r.shape}) | {r.batch} | {r.fp32_ms:.2f} | " + " | ".join(cells) + " |"
        )
    return lines


def verdicts(rows: list[Row], goal: set[str]) -> list[str]:
    """Which of the `goal` specs reach GOAL with the default format, at each batch, by wall
    time (and how many by CPU time); then how the other specs fare."""
    name = DEFAULT_INT8.name
    lines = []
    for batch in sorted({r.batch for r in rows}):
        at = [r for r in rows if r.batch == batch and name in r.ratios and r.spec in goal]
        met = [r.spec for r in at if r.ratios[name] >= GOAL]
        cpu = [r.spec for r in at if r.cpu_ratios[name] >= GOAL]
        missed = [
            f"{r.spec} {r.ratios[name]:.2f}x ({r.cpu_ratios[name]:.2f}x)"
            for r in at
            if r.spec not in met
        ]
        lines.append(
            f"- batch {batch}, default format, >= {GOAL}x fp32: {len(met)} of {len(at)} by wall "
            f"time ({', '.join(met) or 'none'}), {len(cpu)} by CPU time; under it by wall time "
            f"(CPU time): {', '.join(missed) or 'none'}."
        )
    others = [r for r in rows if r.spec not in goal and name in r.ratios]
    if others:
        lines.append(
            f"- Not under the goal (no convolution over {GOAL_CHANNELS} or more channels into "
            f"as many): "
            + ", ".join(f"{r.spec} {r.ratios[name]:.2f}x at batch {r.batch}" for r in others)
            + "."
        )
    return lines


def report(
    rows: list[Row],
    accuracies: list[Accuracy],
    threads: int,
    formats: list[str],
    skipped: list[str],
    goal: set[str],
) -> str:
    loads = "; ".join(f"{r.spec} {r.load}" for r in rows if r.batch == 1)
    lines = [
        SECTION,
        "",
        "`benchmarks/bench_int8.py`: each spec's fp32 file against int8 files in the formats "
        "ONNX Runtime offers, timed interleaved in one process, with `netspec run`'s session "
        f"options at {threads} threads (idle threads not spinning). Each cell: int8's speed as a "
        "multiple of fp32's by median wall time per call, and in brackets by median CPU time "
        f"per call (the process's, all threads). `{DEFAULT_INT8.name}` is netspec's default "
        "(int8 only between int8 convolutions and dense layers); `qdq-u8s8-channel`: every "
        "operation ONNX Runtime quantizes; "
        f"`{PLAIN.strip()}`: the default file in a session with ONNX Runtime's defaults (QDQ "
        f"propagation on); `{NO_NHWC.strip()}`: without ONNX Runtime's NHWC layout (level "
        "'extended'). 224x224 specs run at 112x112 (alexnet's 227 at 115).",
        "",
        f"Machine: {cpu_model()}, {len(os.sched_getaffinity(0))} cores, ONNX Runtime "
        f"{ort.__version__}. Load average (1, 5, 15 min) at each row: {loads}.",
        "",
        *table(rows, formats),
        "",
        *verdicts(rows, goal),
        *([f"- Not measured: {'; '.join(skipped)}."] if skipped else []),
    ]
    if accuracies:
        lines += [
            "",
            "| spec | trained | fp32 accuracy | int8 accuracy | change | top-1 agreement "
            "| int8 / fp32 speed (export's check) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for a in accuracies:
            lines.append(
                f"| {a.spec} | 1 epoch, {a.train_s:.0f} s | {100 * a.fp32:.2f}% | "
                f"{100 * a.int8:.2f}% | {100 * (a.int8 - a.fp32):+.2f} points | "
                f"{100 * a.agreement:.2f}% | {a.speedup:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", help="comma-separated (default: every spec this wide)")
    parser.add_argument(
        "--formats",
        choices=["all", "default"],
        default="default",
        help="default: netspec's and ONNX Runtime's own QDQ U8S8; all: every format, no-nhwc",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=4.0, help="seconds per spec and batch")
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    skipped: list[str] = []
    wide, goal = wide_specs(skipped)
    specs = args.specs.split(",") if args.specs else wide
    every = args.formats == "all"
    formats = [DEFAULT_INT8] + (ORT_FORMATS if every else ORT_FORMATS[:1])
    columns = [f.name for f in formats] + [DEFAULT_INT8.name + PLAIN]
    columns += ["fp32" + NO_NHWC, DEFAULT_INT8.name + NO_NHWC] if every else []
    print(f"{cpu_model()}, {len(os.sched_getaffinity(0))} cores, load {load_average()}")
    rows: list[Row] = []
    for spec in specs:
        try:
            measured = measure(spec, formats, args.threads, args.budget, every)
        except Exception as e:  # a spec another change broke: say so, measure the rest
            skipped.append(f"{spec} ({str(e).splitlines()[0][:120]})")
            print(f"{spec}: skipped: {skipped[-1]}", flush=True)
            continue
        rows += measured
        print("\n".join(table(measured, columns)), flush=True)
    accuracies = []
    if not args.no_accuracy and MNIST.is_dir():
        for spec in ACCURACY_SPECS:
            try:
                accuracies.append(accuracy(spec, args.threads))
            except Exception as e:  # training or export broken by another change: say so
                skipped.append(f"{spec}'s accuracy ({str(e).splitlines()[0][:120]})")
                continue
            print(accuracies[-1], flush=True)
    section = report(rows, accuracies, args.threads, columns, skipped, goal)
    print(section)
    if not args.no_write:
        replace_section(DOC, SECTION, section)


if __name__ == "__main__":
    main()
