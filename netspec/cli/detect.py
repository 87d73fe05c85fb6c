"""`netspec convert --fully-convolutional` and `netspec detect`: a window classifier made
a detector (OverFeat), and any detector run on images with ONNX Runtime.

`convert` opens a spec or a run as `export` does (netspec.train.opening.open_target) and
hands it to netspec.detect.convert; `detect` goes through netspec.runtime only (torch is
never imported: a test checks). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from netspec.cli.console import echo, parse_set, say
from netspec.cli.options import command, limit_options, network_option, provider_option, sets_option
from netspec.errors import UsageError
from netspec.limits import Limits


def _names(text: str | None) -> tuple[str, ...] | None:
    """`--labels 0,1,...,background`: comma-separated class names, none empty."""
    if text is None:
        return None
    names = tuple(n.strip() for n in text.split(","))
    if not all(names):
        raise UsageError(f"--labels {text}: expected names separated by commas, none empty")
    return names


@command("convert")
@click.argument("source", type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="the ONNX file to write",
)
@click.option(
    "--fully-convolutional",
    "fully",
    is_flag=True,
    help="dense stages as convolutions: a window classifier becomes a detector (OverFeat)",
)
@click.option(
    "--labels",
    help="the class names, comma-separated, one of them 'background' (default: the training set's)",
)
@click.option(
    "--check-on",
    "images",
    multiple=True,
    type=click.Path(path_type=Path),
    help="also check the FCN against the sliding window on this image (repeatable)",
)
@network_option
@sets_option("override a constant")
@click.option("--opset", type=click.IntRange(13, 21), default=17, show_default=True)
@limit_options
def convert_cmd(
    source: Path,
    output: Path,
    fully: bool,
    labels: str | None,
    images: tuple[Path, ...],
    network: str | None,
    sets: tuple[str, ...],
    opset: int,
    **limits: int,
) -> None:
    """Convert SOURCE (a run directory, its .safetensors, or a spec: untrained) to an ONNX
    file: with --fully-convolutional, the classifier's dense stages become convolutions
    with the same weights, its input 1xHxW, its output a map of class scores, checked
    against the classifier run on every window of an image."""
    if not fully:
        raise UsageError(
            "say what to convert to", hint="netspec convert RUN --fully-convolutional -o fcn.onnx"
        )
    names = _names(labels)
    from netspec.detect.convert import convert_fcn
    from netspec.train.opening import open_target

    opened = open_target(source, network, parse_set(sets), Limits(**limits))
    convert_fcn(opened, output, labels=names, images=images, opset=opset, log=say)


def _scales(text: str | None) -> tuple[float, ...] | None:
    """`--scales 0.5,1,2`: the pyramid's factors."""
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"--scales {text}: expected numbers separated by commas") from None


@command("detect")
@click.argument("model", type=click.Path(path_type=Path))
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "-o",
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="draw the boxes on each image into this directory, as PNG (default without "
    "--json: ./detections)",
)
@click.option("--json", "as_json", is_flag=True, help="print the boxes as JSON")
@click.option(
    "--threshold",
    type=click.FloatRange(0, 1),
    default=None,
    help="the least score of a box (default: the model's own, else 0.5)",
)
@click.option("--scales", help="image pyramid for a sliding window, e.g. 0.5,1,2 (default: 0.5..2)")
@click.option(
    "--iou",
    type=click.FloatRange(0, 1),
    default=None,
    help="non-maximum suppression: of two boxes of one class overlapping more, keep the "
    "better (default: the model's own, else 0.3)",
)
@provider_option
@click.option("--invert", is_flag=True, help="images are dark ink on light paper: invert them")
def detect_cmd(
    model: Path,
    images: tuple[Path, ...],
    out: Path | None,
    as_json: bool,
    threshold: float | None,
    scales: str | None,
    iou: float | None,
    provider: str,
    invert: bool,
) -> None:
    """Find objects in IMAGES (PNG/JPEG, .npy, or directories of them) with the detector
    MODEL.onnx; draw the boxes with class and score, or print them (xyxy in input pixels)."""
    from netspec.runtime.detect import SCALES, DetectOptions, detector
    from netspec.runtime.detect_files import detect_files
    from netspec.runtime.session import open_model

    options = DetectOptions(threshold, _scales(scales) or SCALES, iou)
    opened = open_model(model, provider)
    detector(opened.info, str(model))
    say(f"provider: {opened.provider}")
    where = out if out is not None or as_json else Path("detections")
    results = detect_files(opened, images, options, where, invert=invert, notice=say)
    if as_json:
        echo(json.dumps(results, indent=2, allow_nan=False))
        return
    for record in results:
        drawn = f" -> {record['file']}" if record["file"] else ""
        n = len(record["detections"])
        echo(f"{record['input']}: {n} box{'' if n == 1 else 'es'}{drawn}")
        for d in record["detections"]:
            x1, y1, x2, y2 = d["xyxy"]
            echo(f"  {d['label']} {d['score']:.3f} at ({x1:g}, {y1:g})-({x2:g}, {y2:g})")
