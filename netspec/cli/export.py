"""`netspec export`: a spec, a run directory or its weights to a checked, verified ONNX file.

torch, onnx and numpy are imported inside the command only.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from netspec.cli.console import parse_set, say
from netspec.cli.options import command, limit_options, network_option, sets_option
from netspec.errors import UsageError
from netspec.limits import Limits

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from netspec.compiler import Compiled

CALIBRATION_LIMIT = 1000  # samples: min/max calibration settles long before this


def batch_value(batch: str) -> str | int:
    """`--batch`: 'dynamic', or a fixed size from 1 to the exporter's MAX_BATCH."""
    from netspec.export.onnx_export import MAX_BATCH  # the one bound: ExportOptions checks it

    if batch == "dynamic":
        return batch
    if batch.isdigit() and 0 < int(batch) <= MAX_BATCH:
        return int(batch)
    raise UsageError(f"--batch {batch}: expected 'dynamic' or a number from 1 to {MAX_BATCH}")


def _data(
    path: Path | None, compiled: Compiled, limit: int | None = None
) -> tuple[npt.NDArray[np.float32] | None, npt.NDArray[np.int64] | None]:
    from netspec.export.onnx_export import input_infos
    from netspec.runtime.inputs import load_samples

    if path is None:
        return None, None
    x, y = load_samples(path, input_infos(compiled)[0])
    return (x[:limit], None if y is None else y[:limit]) if limit else (x, y)


@command("export")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the ONNX file to write",
)
@network_option
@sets_option("override a constant or bind a symbolic size")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True)
@click.option(
    "--batch", default="dynamic", show_default=True, help="'dynamic', or a fixed batch size N"
)
@click.option("--fp16", is_flag=True, help="weights and activations in half precision")
@click.option(
    "--int8",
    is_flag=True,
    help="static int8 quantization; needs --calibrate. Timed against fp32 on this CPU: "
    "a warning when int8 is the slower",
)
@click.option(
    "--int8-min-speedup",
    type=click.FloatRange(min=0, min_open=True),
    metavar="X",
    help="refuse (write nothing) unless the int8 file runs at least X times as fast as fp32 "
    "here, e.g. 1.5",
)
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
@limit_options
def export_cmd(
    source: Path,
    output: Path,
    network: str | None,
    sets: tuple[str, ...],
    opset: int,
    batch: str,
    fp16: bool,
    int8: bool,
    int8_min_speedup: float | None,
    calibrate: Path | None,
    samples: Path | None,
    no_verify: bool,
    **limits: int,
) -> None:
    """Export SOURCE (a spec, a run directory, or a .safetensors file) to ONNX, verified."""
    if int8 and calibrate is None:
        raise UsageError("--int8 needs --calibrate DATA (samples like the model's inputs)")
    if calibrate is not None and not int8:
        raise UsageError(
            "--calibrate is for --int8 only", hint="add --int8, or verify on data with --samples"
        )
    if fp16 and int8:
        raise UsageError("choose one of --fp16 and --int8")
    if int8_min_speedup is not None and not int8:
        raise UsageError("--int8-min-speedup is for --int8 only")
    fixed = batch_value(batch)
    from netspec.artifact import Precision
    from netspec.export.onnx_export import ExportOptions, export_compiled
    from netspec.train.opening import open_target  # imports torch

    opened = open_target(source, network, parse_set(sets), Limits(**limits))
    compiled, module = opened.compiled, opened.module(say)
    calibration, calibration_labels = _data(
        calibrate if int8 else None, compiled, CALIBRATION_LIMIT
    )
    x, y = _data(samples, compiled)
    if x is None:  # no held-out samples: report agreement on the calibration set
        x, y = calibration, calibration_labels
    precision: Precision = "int8" if calibration is not None else "fp16" if fp16 else "fp32"
    options = ExportOptions(
        opset=opset,
        batch=fixed,
        precision=precision,
        verify=not no_verify,
        int8_min_speedup=int8_min_speedup,
    )
    export_compiled(
        compiled,
        output,
        options,
        weights=module,
        samples=x,
        targets=y,
        calibration=calibration,
        log=say,
    )
