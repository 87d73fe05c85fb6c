"""`netspec export`, `netspec run` and `netspec bench`, as click commands for cli.py.

torch, onnx and onnxruntime are imported inside the command functions only, so that
importing this module (and `netspec compile`) stays fast. Exit codes follow cli.py:
0 ok, 1 a mistake in a spec or an input file, 2 a usage error.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np
import numpy.typing as npt

from netspec.console import parse_set, reported, say
from netspec.text import first_line, fmt_shape

if TYPE_CHECKING:
    from netspec.artifact import ModelInfo
    from netspec.compiler import Compiled
    from netspec.runtime.bench import Timing

CALIBRATION_LIMIT = 1000  # samples: min/max calibration settles long before this


_provider = click.option(
    "--provider",
    type=click.Choice(["auto", "cpu", "cuda", "tensorrt"]),
    default="auto",
    show_default=True,
    help="ONNX Runtime execution provider; auto: TensorRT, then CUDA, then the CPU",
)


# ---- export ---------------------------------------------------------------------------


def find_source(source: Path) -> tuple[Path, Path | None]:
    """(spec, weights) from a spec file, a run directory, or a `.safetensors` file in one."""
    from netspec.errors import UsageError

    if source.is_dir():
        spec = source / "spec.net"
        weights = next(
            (
                w
                for w in (
                    source / "weights" / "best.safetensors",
                    source / "weights" / "last.safetensors",
                )
                if w.is_file()
            ),
            None,
        )
        if not spec.is_file():
            raise UsageError(
                f"{source}: a directory without spec.net; expected a run directory "
                "(runs/NAME/ with spec.net and weights/)"
            )
        return spec, weights
    if source.suffix == ".safetensors":
        candidates = [source.parent.parent / "spec.net", source.parent / "spec.net"]
        spec_file = next((c for c in candidates if c.is_file()), None)
        if spec_file is None:
            raise UsageError(
                f"{source}: no spec.net two levels up or beside it; expected "
                "weights from a run directory (runs/NAME/weights/best.safetensors)"
            )
        return spec_file, source
    if not source.is_file():
        raise UsageError(f"{source}: no such file or directory")
    return source, None


def _batch_value(batch: str) -> str | int:
    from netspec.errors import UsageError

    if batch == "dynamic":
        return batch
    if batch.isdigit() and int(batch) > 0:
        return int(batch)
    raise UsageError(f"--batch {batch}: expected 'dynamic' or a positive number")


def _data(
    path: Path | None, compiled: Compiled, limit: int | None = None
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.int64] | None]:
    from netspec.export.onnx_export import input_infos
    from netspec.runtime.inputs import load_samples

    if path is None:
        return None, None
    x, y = load_samples(path, input_infos(compiled)[0])
    return (x[:limit], None if y is None else y[:limit]) if limit else (x, y)


@click.command("export")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the ONNX file to write",
)
@click.option("--network", "-n", help="which network of the spec (when it has several)")
@click.option(
    "--set",
    "sets",
    multiple=True,
    metavar="NAME=VALUE",
    help="override a constant or bind a symbolic size",
)
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True)
@click.option(
    "--batch", default="dynamic", show_default=True, help="'dynamic', or a fixed batch size N"
)
@click.option("--fp16", is_flag=True, help="weights and activations in half precision")
@click.option("--int8", is_flag=True, help="static int8 quantization (QDQ); needs --calibrate")
@click.option(
    "--calibrate",
    type=click.Path(exists=True, path_type=Path),
    help="calibration data: an IDX images file, .npy, or a directory of images",
)
@click.option(
    "--samples",
    type=click.Path(exists=True, path_type=Path),
    help="real samples to verify on (an IDX images file with its labels file beside "
    "it gives accuracy)",
)
@click.option("--no-verify", is_flag=True, help="skip the check against PyTorch")
def export_cmd(
    source: Path,
    output: Path,
    network: str | None,
    sets: tuple[str, ...],
    opset: int,
    batch: str,
    fp16: bool,
    int8: bool,
    calibrate: Path | None,
    samples: Path | None,
    no_verify: bool,
) -> None:
    """Export SOURCE (a spec, a run directory, or a .safetensors file) to ONNX, verified."""
    with reported():
        from netspec.errors import UsageError

        if int8 and calibrate is None:
            raise UsageError("--int8 needs --calibrate DATA (samples like the model's inputs)")
        if fp16 and int8:
            raise UsageError("choose one of --fp16 and --int8")
        _export(
            source,
            output,
            network,
            sets,
            opset,
            _batch_value(batch),
            fp16,
            calibrate if int8 else None,
            samples,
            not no_verify,
        )


def _export(
    source: Path,
    output: Path,
    network: str | None,
    sets: tuple[str, ...],
    opset: int,
    batch: str | int,
    fp16: bool,
    calibrate: Path | None,
    samples: Path | None,
    verify: bool,
) -> None:
    import netspec
    from netspec.export.onnx_export import export_compiled
    from netspec.lower import to_torch
    from netspec.lower.weights import load_weights

    spec, weights_file = find_source(source)
    compiled = netspec.compile(spec, network, **parse_set(sets))
    module = None
    if weights_file is not None:
        module = to_torch(compiled)
        load_weights(weights_file, module)
        say(f"weights: {weights_file}")
    calibration, calibration_labels = _data(calibrate, compiled, CALIBRATION_LIMIT)
    x, y = _data(samples, compiled)
    if x is None:  # no held-out samples: report agreement on the calibration set
        x, y = calibration, calibration_labels
    export_compiled(
        compiled,
        output,
        weights=module,
        opset=opset,
        batch=batch,
        fp16=fp16,
        int8_calibration=calibration,
        verify=verify,
        samples=x,
        targets=y,
        log=say,
    )


# ---- run ------------------------------------------------------------------------------


def scores(output: npt.NDArray[np.float32], kind: str) -> npt.NDArray[np.float32]:
    """Class probabilities: softmax of logits, softmax of negative RBF distances."""
    flat = output.reshape(len(output), -1).astype(np.float64)
    if kind == "probabilities":
        return flat.astype(np.float32)
    if kind == "sigmoid":
        return (np.concatenate([1 - flat, flat], axis=1) if flat.shape[1] == 1 else flat).astype(
            np.float32
        )
    z = -flat if kind == "rbf_distances" else flat
    z = np.exp(z - z.max(axis=1, keepdims=True))
    probs: npt.NDArray[np.float32] = (z / z.sum(axis=1, keepdims=True)).astype(np.float32)
    return probs


def top_k(
    probs: npt.NDArray[np.float32], k: int, labels: Sequence[str] | None
) -> list[list[dict[str, Any]]]:
    rows = []
    for p in probs:
        order = np.argsort(-p, kind="stable")[:k]
        rows.append(
            [
                {
                    "class": int(c),
                    "label": labels[c] if labels and c < len(labels) else str(int(c)),
                    "probability": float(p[c]),
                }
                for c in order
            ]
        )
    return rows


@click.command("run")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--top", "k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of lines")
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="inputs per ONNX Runtime call",
)
@_provider
@click.option(
    "--invert",
    is_flag=True,
    help="images are dark ink on light paper: invert them "
    "(MNIST models expect a white digit on black)",
)
def run_cmd(
    model: Path,
    inputs: tuple[Path, ...],
    k: int,
    as_json: bool,
    batch: int,
    provider: str,
    invert: bool,
) -> None:
    """Classify INPUTS (PNG/JPEG images, .npy, IDX files, directories) with MODEL.onnx."""
    with reported():
        from netspec.errors import UsageError
        from netspec.export.verify import run_batched
        from netspec.runtime.inputs import load_inputs
        from netspec.runtime.session import open_model

        opened = open_model(model, provider)
        say(f"provider: {opened.provider}")
        info = opened.info
        if len(info.inputs) != 1:
            names = ", ".join(i.name for i in info.inputs)
            raise UsageError(
                f"{model}: the model takes {len(info.inputs)} inputs ({names}); "
                "netspec run feeds models with one input"
            )
        loaded = load_inputs(list(inputs), info.inputs[0], invert=invert, notice=say)
        static = opened.session.get_inputs()[0].shape[0]
        chunk = static if isinstance(static, int) else batch
        outputs = _checked_run(opened, loaded.array, chunk, run_batched)
        rows = top_k(scores(outputs, info.outputs[0].kind), k, info.labels)
        _print_predictions(loaded.names, rows, as_json, info)


def _checked_run(
    opened: Any, array: npt.NDArray[np.float32], chunk: int, run_batched: Any
) -> npt.NDArray[np.float32]:
    from netspec.errors import InputError

    try:
        out: npt.NDArray[np.float32] = run_batched(lambda xs: opened.run(*xs), [array], chunk)[0]
    except Exception as e:  # ONNX Runtime's own error types for shapes it cannot take
        want = fmt_shape(opened.info.inputs[0].shape)
        raise InputError(
            f"{opened.path}: cannot run on inputs of shape "
            f"{'x'.join(map(str, array.shape[1:]))}; expected {want} per sample "
            f"({first_line(e)})"
        ) from None
    return out


def _print_predictions(
    names: Sequence[str], rows: list[list[dict[str, Any]]], as_json: bool, info: ModelInfo
) -> None:
    if as_json:
        click.echo(
            json.dumps([{"input": n, "top": r} for n, r in zip(names, rows, strict=True)], indent=2)
        )
        return
    for name, row in zip(names, rows, strict=True):
        best = ", ".join(f"{c['label']} ({c['probability']:.3f})" for c in row)
        click.echo(f"{name}: {best}")


# ---- bench ----------------------------------------------------------------------------


def _batches(text: str) -> list[int]:
    from netspec.errors import UsageError

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"--batch {text}: expected sizes like 1,64,256")
    return values


@click.command("bench")
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--batch",
    "batch_text",
    default="1,64,256",
    show_default=True,
    help="batch sizes, comma-separated",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="threads for both engines (default: ONNX Runtime's and PyTorch's own)",
)
@click.option(
    "--vs",
    "versus",
    type=click.Choice(["torch"]),
    help="also time PyTorch eager on the same weights, interleaved",
)
@_provider
@click.option(
    "--rounds",
    type=click.IntRange(min=1),
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
    with reported():
        from netspec.errors import UsageError
        from netspec.runtime.bench import bench, speedups
        from netspec.runtime.session import open_model

        batches = _batches(batch_text)
        opened = open_model(model, provider, threads, spin=versus is None)
        static = opened.session.get_inputs()[0].shape[0]
        if isinstance(static, int) and any(b != static for b in batches):
            raise UsageError(
                f"{model}: exported with a fixed batch of {static}; use --batch {static}"
            )
        say(f"provider: {opened.provider}")
        timings = bench(opened, batches, versus == "torch", threads, rounds)
        _print_timings(timings, speedups(timings), as_json)


def _print_timings(timings: list[Timing], ratios: dict[int, float], as_json: bool) -> None:
    if as_json:
        click.echo(
            json.dumps(
                {
                    "timings": [t.to_json() for t in timings],
                    "speedup_vs_torch": {str(b): r for b, r in ratios.items()},
                },
                indent=2,
            )
        )
        return
    click.echo(
        f"{'engine':<12} {'batch':>5} {'p50 ms':>9} {'p90 ms':>9} {'p99 ms':>9} {'samples/s':>11}"
    )
    for t in timings:
        click.echo(
            f"{t.engine:<12} {t.batch:>5} {t.p50_ms:>9.3f} {t.p90_ms:>9.3f} "
            f"{t.p99_ms:>9.3f} {t.throughput:>11.0f}"
        )
    for b, r in ratios.items():
        click.echo(f"batch {b}: onnxruntime is {r:.2f}x PyTorch eager")
