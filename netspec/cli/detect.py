"""`netspec convert --fully-convolutional` and `netspec detect`: a window classifier made
a detector (OverFeat), and any detector run on images with ONNX Runtime.

`convert` opens a spec or a run as `export` does (netspec.cli.export.open_source) and
hands it to netspec.export.fcn; `detect` goes through netspec.runtime only (torch is never
imported: a test checks). Heavy modules are imported inside the commands.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from netspec.cli.console import echo, parse_set, say
from netspec.cli.options import command, limit_options, network_option, provider_option, sets_option
from netspec.errors import InputError, UsageError
from netspec.limits import Limits

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from netspec.artifact import InputInfo
    from netspec.compiler import Compiled
    from netspec.detection.boxes import Detections
    from netspec.runtime.detect import DetectOptions
    from netspec.runtime.session import Model


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
    from netspec.cli.export import open_source
    from netspec.export.fcn import export_fcn, fully_convolutional
    from netspec.export.onnx_export import input_infos
    from netspec.lower import to_torch
    from netspec.lower.weights import load_weights

    compiled, weights_file = open_source(source, network, parse_set(sets), Limits(**limits))
    fully_convolutional(compiled)  # refuse what cannot convert before anything is loaded
    module = None
    if weights_file is not None:
        module = to_torch(compiled)
        load_weights(weights_file, module)
        say(f"weights: {weights_file}")
    given = input_infos(compiled)[0]
    sliding = replace(given, shape=(given.shape[0], "H", "W"))
    checks = [a for path in images for a in _samples(path, sliding)]
    boxes = None
    if _dataset(compiled) == "mnist_windows":
        boxes, scene = _digit_windows(names, given.mean, given.std)
        checks.append(scene)
    export_fcn(
        compiled, output, module, labels=names, boxes=boxes, images=checks, opset=opset, log=say
    )


def _dataset(compiled: Compiled) -> str | None:
    return compiled.train.dataset if compiled.train is not None else None


def _digit_windows(
    names: tuple[str, ...] | None, mean: float, std: float
) -> tuple[tuple[tuple[float, float], ...], npt.NDArray[np.float32]]:
    """For a classifier of MNIST scene windows: the digits' box shapes in their windows
    (MNIST's training digits framed as netspec.data.windows frames them: its ink share,
    the scenes' ink threshold), and a randomized 128x128 test scene to check the FCN on."""
    import numpy as np

    from netspec.data.mnist import load_mnist
    from netspec.data.scenes import INK, DigitPool, SceneConfig, make_scene
    from netspec.data.windows import INK_SHARE, LABELS
    from netspec.export.fcn import ink_boxes

    digits = load_mnist(log=say)
    labels = digits.train_y.astype(np.int64)
    boxes = ink_boxes(digits.train_x, labels, names or LABELS, INK_SHARE, INK)
    scene = make_scene(SceneConfig.randomized(split="test"), DigitPool.of(digits, "test"), 0)
    image = (scene.image.astype(np.float32) / 255 - mean) / std
    say("checking on a randomized 128x128 test scene too")
    return boxes, image[None, None].astype(np.float32)


def _samples(path: Path, info: InputInfo) -> list[npt.NDArray[np.float32]]:
    """Each image in `path`, model-ready at its own size, as (1, C, H, W)."""
    from netspec.runtime.inputs import expand_paths, load_file

    arrays = []
    for file in expand_paths([path]):
        batch = load_file(file, info, notice=say)
        arrays += [batch[i : i + 1] for i in range(len(batch))]
    return arrays


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
    from netspec.runtime.detect import SCALES, DetectOptions, detector_kind
    from netspec.runtime.session import open_model

    options = DetectOptions(threshold, _scales(scales) or SCALES, iou)
    opened = open_model(model, provider)
    detector_kind(opened.info, str(model))
    say(f"provider: {opened.provider}")
    where = out if out is not None or as_json else Path("detections")
    found = _inputs(opened, images, invert)
    stems = _stems([name for name, _ in found])
    results = [
        _detect_one(opened, name, image, options, where and where / f"{stem}.png")
        for (name, image), stem in zip(found, stems, strict=True)
    ]
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


def _inputs(
    model: Model, paths: tuple[Path, ...], invert: bool
) -> list[tuple[str, npt.NDArray[np.float32]]]:
    """Every image, read whole (a detector sees an image at its own size) and model-ready."""
    from netspec.runtime.inputs import expand_paths, load_file

    given = model.info.inputs[0]
    if len(given.shape) != 3:
        raise InputError(f"{model.path}: its input is {given.shape}; a detector takes images")
    info = replace(given, shape=(given.shape[0], "H", "W"))
    found: list[tuple[str, npt.NDArray[np.float32]]] = []
    for path in expand_paths(list(paths)):
        batch = load_file(path, info, invert=invert, notice=say)
        names = [str(path)] if len(batch) == 1 else [f"{path}[{i}]" for i in range(len(batch))]
        found += [(name, batch[i : i + 1]) for i, name in enumerate(names)]
    return found


def _detect_one(
    model: Model,
    name: str,
    image: npt.NDArray[np.float32],
    options: DetectOptions,
    target: Path | None,
) -> dict[str, Any]:
    """One image's record (`input`, `size`, `detections`, `file`), its picture drawn at
    `target` (if any)."""
    from netspec.runtime.detect import detect, records

    found = detect(model, image, options)
    labels = model.info.labels or ()
    drawn = _draw(model, image, found, target) if target is not None else None
    return {
        "input": name,
        "size": list(image.shape[2:]),
        "detections": records(found, labels),
        "file": drawn,
    }


def _draw(model: Model, image: npt.NDArray[np.float32], found: Detections, target: Path) -> str:
    """The image with its boxes, written atomically to `target` (a PNG)."""
    from netspec.fileio import make_dirs, write_atomic
    from netspec.runtime.detect import draw, pixels

    info = model.info.inputs[0]
    picture = draw(pixels(image, info.mean, info.std), found, model.info.labels or ())
    make_dirs(target.parent)
    write_atomic(target, lambda tmp: picture.save(tmp, format="PNG"))
    return str(target)


def _stems(names: list[str]) -> list[str]:
    """A distinct file name stem per input: `scene.png` -> `scene`, `x.npy[3]` -> `x-3`."""
    stems: list[str] = []
    for name in names:
        match = re.fullmatch(r"(.*)\[(\d+)\]", name)
        path, index = (match.group(1), f"-{match.group(2)}") if match else (name, "")
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(path).stem + index).lstrip(".") or "_"
        unique, n = stem, 2
        while unique in stems:
            unique, n = f"{stem}-{n}", n + 1
        stems.append(unique)
    return stems


# ---- netspec eval MODEL.onnx --scenes DIR -------------------------------------------------

EVAL_THRESHOLD = 0.05  # mAP ranks every box: keep the weak ones too (COCO keeps 100 an image)
DRAW_THRESHOLD = 0.5  # detections.png shows the boxes `netspec detect` would draw


def evaluate_detector(model: Path, scenes: Path | None, log: Callable[[str], None]) -> Path:
    """A detector file on a directory of test scenes (`netspec scenes`): COCO's mAP@0.5 and
    mAP@0.5:0.95 per class and overall (pycocotools), the time per scene, written as
    metrics.json beside pr.png and detections.png (the boxes scoring DRAW_THRESHOLD or more)
    in `<model>-eval/`; the directory."""
    import time

    import numpy as np

    from netspec.data.scenefiles import read_scenes
    from netspec.detection.coco import evaluate
    from netspec.detection.plots import detections_grid, plot_pr
    from netspec.fileio import make_dirs, write_text
    from netspec.runtime.detect import DetectOptions, detect, detector_kind
    from netspec.runtime.session import open_model

    if scenes is None:
        raise UsageError(
            f"{model}: a detector file is evaluated on scenes",
            hint=f"netspec eval {model} --scenes DIR (a directory `netspec scenes` wrote)",
        )
    opened = open_model(model)
    detector_kind(opened.info, str(model))
    labels = opened.info.labels or ()
    classes = _object_classes(opened, labels)
    found_set = read_scenes(scenes)
    info = opened.info.inputs[0]
    options = DetectOptions(threshold=EVAL_THRESHOLD)
    found: list[Detections] = []
    started = time.perf_counter()
    for scene in found_set.scenes:
        image = (scene.image.astype(np.float32) / 255 - info.mean) / info.std
        found.append(detect(opened, image[None, None].astype(np.float32), options))
    per_scene = (time.perf_counter() - started) / len(found_set.scenes)
    metrics = evaluate(found_set.scenes, found, classes)
    out = make_dirs(model.parent / f"{model.stem}-eval")
    record = {
        "model": str(model),
        "scenes": str(scenes),
        "count": len(found_set.scenes),
        **metrics.as_dict(list(labels)),
        "seconds_per_scene": per_scene,
        "threshold": EVAL_THRESHOLD,
        "scales": list(options.scales),
        "iou": options.iou,
    }
    write_text(out / "metrics.json", json.dumps(record, indent=2) + "\n")
    plot_pr(out / "pr.png", metrics, list(labels))
    shown = [f.take(np.flatnonzero(f.scores >= DRAW_THRESHOLD)) for f in found]
    detections_grid(out / "detections.png", found_set.scenes, shown, list(labels))
    log(
        f"{model} on {len(found_set.scenes)} scenes of {scenes}: mAP@0.5 {metrics.map50:.3f}, "
        f"mAP@0.5:0.95 {metrics.map:.3f}, {per_scene * 1000:.1f} ms a scene"
    )
    for c, (ap50, ap) in metrics.per_class.items():
        log(f"  {labels[c] if c < len(labels) else c}: AP@0.5 {ap50:.3f}, AP@0.5:0.95 {ap:.3f}")
    log(f"wrote {out / 'metrics.json'}, {out / 'pr.png'}, {out / 'detections.png'}")
    return out


def _object_classes(model: Model, labels: tuple[str, ...]) -> int:
    """The classes a scene's boxes can have: every label but the background, which must be
    the last (the scenes' classes are 0..9 and the windows' background 10)."""
    window = model.info.sliding_window
    background = window.background if window is not None else None
    if background is not None and background != len(labels) - 1:
        raise InputError(
            f"{model.path}: its background is class {background} of {len(labels)}; scenes "
            "are evaluated with the background last"
        )
    return len(labels) - (background is not None)
