"""`netspec eval MODEL.onnx --scenes DIR`: a detector file on a directory of test scenes
(what `netspec scenes` writes), through ONNX Runtime only (never torch).

COCO's mAP@0.5 and mAP@0.5:0.95 per class and overall (netspec.detection.coco), the time
per scene, written as metrics.json beside pr.png and detections.png in `<model>-eval/`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from netspec.data.scenefiles import read_scenes
from netspec.data.scenes import Scene
from netspec.detection.boxes import Detections
from netspec.detection.coco import evaluate
from netspec.detection.plots import detections_grid, plot_pr
from netspec.errors import InputError, ModelError
from netspec.fileio import make_dirs, write_text
from netspec.runtime.detect import DetectOptions, Detector, detector
from netspec.runtime.session import Model, open_model

EVAL_THRESHOLD = 0.05  # mAP ranks every box: keep the weak ones too (COCO keeps 100 an image)
DRAW_THRESHOLD = 0.5  # detections.png shows the boxes `netspec detect` would draw


def evaluate_detector(model: Path, scenes: Path, log: Callable[[str], None]) -> Path:
    """The detector file `model` on the scenes in `scenes`: metrics.json, pr.png and
    detections.png (the boxes scoring DRAW_THRESHOLD or more) in `<model>-eval/`, the
    numbers said in `log`; the directory."""
    opened = open_model(model)
    found_by = detector(opened.info, str(model))
    labels = opened.info.labels or ()
    classes = _object_classes(opened, found_by, labels)
    found_set = read_scenes(scenes)
    _scored(found_set.scenes, classes, scenes, model)
    info = opened.info.inputs[0]
    options = DetectOptions(threshold=EVAL_THRESHOLD)
    found: list[Detections] = []
    started = time.perf_counter()
    for scene in found_set.scenes:
        image = (scene.image.astype(np.float32) / 255 - info.mean) / info.std
        found.append(found_by.decode(opened, image[None, None].astype(np.float32), options))
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
    shown = [f.at_least(DRAW_THRESHOLD) for f in found]
    detections_grid(out / "detections.png", found_set.scenes, shown, list(labels))
    log(
        f"{model} on {len(found_set.scenes)} scenes of {scenes}: mAP@0.5 {metrics.map50:.3f}, "
        f"mAP@0.5:0.95 {metrics.map:.3f}, {per_scene * 1000:.1f} ms a scene"
    )
    for c, (ap50, ap) in metrics.per_class.items():
        log(f"  {labels[c] if c < len(labels) else c}: AP@0.5 {ap50:.3f}, AP@0.5:0.95 {ap:.3f}")
    log(f"wrote {out / 'metrics.json'}, {out / 'pr.png'}, {out / 'detections.png'}")
    return out


def _object_classes(model: Model, found_by: Detector[Any], labels: tuple[str, ...]) -> int:
    """The classes a scene's boxes can have: every label but the background (where the
    detector has one), which must be the last (the scenes' classes are 0..9 and the
    windows' background 10)."""
    if not labels:
        raise ModelError(
            f"{model.path}: its metadata names no class labels; netspec eval scores a "
            "detector's boxes class by class, by its labels"
        )
    background = found_by.background
    if background is not None and background != len(labels) - 1:
        raise InputError(
            f"{model.path}: its background is class {background} of {len(labels)}; scenes "
            "are evaluated with the background last"
        )
    return len(labels) - (background is not None)


def _scored(found: Sequence[Scene], classes: int, scenes: Path, model: Path) -> None:
    """Refuse scenes holding a digit of a class the model does not detect (0..classes-1)."""
    top = max((int(s.classes.max()) for s in found if len(s.classes)), default=-1)
    if top >= classes:
        raise InputError(
            f"{scenes}: its scenes hold class {top}, but {model} detects only classes 0 to "
            f"{classes - 1}"
        )
