"""`netspec run` and `netspec bench`: an exported model on ONNX Runtime.

An input goes one way: this module -> netspec.runtime (session, inputs, batching,
outputs) -> netspec.artifact. numpy and onnxruntime are imported inside the commands;
torch only for `bench --vs torch` (netspec.export.eager).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netspec.cli.console import echo, say
from netspec.cli.options import (
    MAX_BATCH,
    batch_range,
    command,
    provider_option,
    threads_option,
)
from netspec.errors import UsageError
from netspec.threads import choose_threads

BUSY = 0.5  # cores' worth of other work from which the machine counts as busy

if TYPE_CHECKING:
    from netspec.runtime.bench import RunnerMaker, Timing
    from netspec.runtime.session import Model


@command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of lines")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    help="save every map and tensor output here as .npy (and a map of 1 or 3 channels as "
    "PNG); without it they are only summarized",
)
@click.option(
    "--batch",
    type=batch_range(),
    default=64,
    show_default=True,
    help="inputs per ONNX Runtime call",
)
@provider_option
@click.option(
    "--invert",
    is_flag=True,
    help="images are dark ink on light paper: invert them "
    "(MNIST models expect a white digit on black)",
)
@threads_option
def run_cmd(
    model: Path,
    inputs: tuple[Path, ...],
    k: int,
    as_json: bool,
    out: Path | None,
    batch: int,
    provider: str,
    invert: bool,
    threads: int | None,
) -> None:
    """Run MODEL.onnx on INPUTS (PNG/JPEG images, .npy, IDX files, directories) and print
    every output as its kind calls for: the top classes of class scores; the shape and
    range of a map or tensor (saved under --out DIR); an embedding's length."""
    from netspec.runtime.batching import run_model
    from netspec.runtime.inputs import load_inputs
    from netspec.runtime.outputs import Reading, read_outputs
    from netspec.runtime.session import open_model

    chosen = choose_threads(threads, quick=True)
    opened = open_model(model, provider, chosen.threads, spin=chosen.busy < BUSY)
    say(f"provider: {opened.provider}, {chosen.describe()}")
    info = opened.info
    if len(info.inputs) != 1:
        names = ", ".join(i.name for i in info.inputs)
        raise UsageError(
            f"{model}: the model takes {len(info.inputs)} inputs ({names}); "
            "netspec run feeds models with one input"
        )
    loaded = load_inputs(list(inputs), info.inputs[0], invert=invert, notice=say)
    outputs = run_model(opened, loaded.array, batch)
    if out is None and any(not o.scores and o.kind != "embedding" for o in info.outputs):
        say("maps and tensors are summarized only: pass --out DIR to save them (.npy, PNG)")
    records = read_outputs(Reading(info, k, out), loaded.names, outputs)
    _print_records(records, as_json)


def _print_records(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        echo(json.dumps(records, indent=2, allow_nan=False))
        return
    for record in records:
        if "top" in record:  # a classifier: one line per input, as always
            echo(f"{record['input']}: {_classes(record['top'])}")
            continue
        for output in record["outputs"]:
            echo(f"{record['input']}: {output['name']} {_describe(output)}")


def _classes(top: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['label']} ({c['probability']:.3f})" for c in top)


def _describe(output: dict[str, Any]) -> str:
    """`(map 1x28x28): min 0 max 0.998 mean 0.13 -> out/a.recon.npy, out/a.recon.png`."""
    if "top" in output:
        return f"({output['kind']}): {_classes(output['top'])}"
    shape = "x".join(str(d) for d in output["shape"])
    text = f"({output['kind']} {shape}): "
    if output["kind"] == "embedding":
        head = ", ".join(f"{v:.4g}" for v in output["head"])
        text += f"norm {output['norm']:.4g}, first values [{head}]"
    elif output["min"] is None:
        text += "no finite values"
    else:
        text += f"min {output['min']:.4g} max {output['max']:.4g} mean {output['mean']:.4g}"
    if output["nonfinite"]:
        text += f" ({output['nonfinite']} values NaN or infinite)"
    if output.get("files"):
        text += " -> " + ", ".join(output["files"])
    return text


def batch_sizes(text: str) -> list[int]:
    """`--batch 1,64,256`: each from 1 to MAX_BATCH."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > MAX_BATCH:
        raise UsageError(f"--batch {text}: expected sizes from 1 to {MAX_BATCH}, like 1,64,256")
    return values


def _check_batches(opened: Model, batches: Sequence[int]) -> None:
    """Refuse batch sizes the file cannot take, or whose random inputs would not fit."""
    from netspec.runtime.batching import fixed_batch
    from netspec.runtime.session import MAX_CALL_VALUES, sample_values

    static = fixed_batch(opened)
    if static is not None and any(b != static for b in batches):
        raise UsageError(
            f"{opened.path}: exported with a fixed batch of {static}; use --batch {static}"
        )
    per_sample = max(sample_values(i) for i in opened.info.inputs)
    largest = max(batches)
    if largest * per_sample > MAX_CALL_VALUES:
        raise UsageError(
            f"--batch {largest}: {largest} samples of {per_sample:,} values each is more than "
            f"the {MAX_CALL_VALUES:,} values netspec times in one call"
        )


def _torch(opened: Model, threads: int | None) -> dict[str, RunnerMaker]:
    """PyTorch eager on the file's weights, for `--vs torch`."""
    from netspec.export.eager import torch_engine

    return {"torch": torch_engine(opened.path, opened.info, threads)}


@command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--batch",
    "batch_text",
    default="1,64,256",
    show_default=True,
    help="batch sizes, comma-separated",
)
@threads_option
@click.option(
    "--vs",
    "versus",
    type=click.Choice(["torch"]),
    help="also time PyTorch eager on the same weights, interleaved",
)
@provider_option
@click.option(
    "--rounds",
    type=click.IntRange(1, 1_000_000),
    help="timed calls per engine and batch size (default: about 1.5 s each)",
)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def bench_cmd(
    model: Path,
    batch_text: str,
    threads: int | None,
    versus: str | None,
    provider: str,
    rounds: int | None,
    as_json: bool,
) -> None:
    """Latency (p50/p90/p99) and throughput of MODEL per batch size, optionally vs PyTorch."""
    from netspec.runtime.bench import bench, speedups
    from netspec.runtime.session import open_model

    batches = batch_sizes(batch_text)
    chosen = choose_threads(threads)
    opened = open_model(model, provider, chosen.threads, spin=versus is None)
    _check_batches(opened, batches)
    say(f"provider: {opened.provider}, {chosen.describe()} for every engine")
    say(f"load: {_load()}")
    if chosen.given is None and chosen.busy >= BUSY:
        say(
            f"warning: the machine is busy ({chosen.busy:.1f} of {chosen.cores} cores with "
            "other work): these timings are not a quiet machine's"
        )
    others = _torch(opened, chosen.threads) if versus == "torch" else {}
    timings = bench(opened, batches, others, rounds)
    _print_timings(timings, speedups(timings), as_json)


def _load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1, 5, 15 min)"
    except OSError:
        return "unknown"


def _print_timings(timings: list[Timing], ratios: dict[int, float], as_json: bool) -> None:
    if as_json:
        echo(
            json.dumps(
                {
                    "timings": [t.to_json() for t in timings],
                    "speedup_vs_torch": {str(b): r for b, r in ratios.items()},
                },
                indent=2,
            )
        )
        return
    echo(f"{'engine':<12} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'samples/s':>11}")
    for t in timings:
        echo(
            f"{t.engine:<12} {t.batch:>5} {t.p50_ms:>9.3f} {t.p90_ms:>9.3f} "
            f"{t.p99_ms:>9.3f} {t.throughput:>11.0f}"
        )
    for b, r in ratios.items():
        echo(f"batch {b}: onnxruntime is {r:.2f}x PyTorch eager")
