"""Detectors side by side on the same test scenes: mAP@0.5, mAP@0.5:0.95, ONNX Runtime time
per scene and multiply-adds per scene, for each ONNX detector given (a single-shot YOLO
from `netspec train specs/yolo_digits.net`, an OverFeat FCN from `netspec convert`).

    .venv/bin/python benchmarks/bench_detectors.py MODEL.onnx [MODEL.onnx ...]
        [--count 500] [--seed 1] [--mnist DIR] [--threads 2]

Two sets of test scenes are drawn from MNIST's test digits (128x128, 1..4 digits): with
every randomization on, backgrounds from the training families ("randomized"), and the same
with backgrounds only from the held-out family `cells`, which no training setting draws
("held out"). Each model finds its boxes as `netspec detect` does (netspec.runtime.detect,
ONNX Runtime only), every box above a score of 0.01 kept for the metrics (COCO's protocol
ranks them; netspec.detection.coco); a detector of one class (a Viola-Jones cascade's
"digit") is scored class-agnostic, every digit its class. Time per scene is the median of
the per-scene times of the whole pass (one scene at a time, `--threads` ORT threads),
decoding and suppression included. Multiply-adds are counted from the ONNX graph at the
shapes each scene runs at (Conv and Gemm/MatMul; a pyramid's every scale), and for the
R-CNN family (a spec whose layers run per region) by netspec's compiler. Parameters are
the trainable ones of the spec the file carries (the initializers' values where it does not
compile, as a converted file's), and training minutes the sum of the `seconds` column of the
metrics.csv beside the file (a run's directory), where there is one. Prints a markdown table
for docs/results.md.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import shape_inference

from netspec.data import load_mnist
from netspec.data.scenes import DigitPool, Scene, SceneConfig, make_scenes
from netspec.detection.coco import Metrics, evaluate
from netspec.runtime.detect import DetectOptions, detect
from netspec.runtime.session import open_model

ROOT = Path(__file__).resolve().parent.parent
MNIST = ROOT.parent / "shared" / "data" / "mnist"
EVAL_SCORE = 0.01


def scene_sets(count: int, seed: int, mnist: Path) -> dict[str, list[Scene]]:
    """The randomized and the held-out-background test scenes."""
    pool = DigitPool.of(load_mnist(mnist), "test")
    common = {"size": 128, "digits": (1, 4), "split": "test", "seed": seed}
    sets = {
        "randomized": SceneConfig.randomized(**common),
        "held out (cells)": SceneConfig.randomized(families=("cells",), **common),
    }
    return {name: list(make_scenes(config, pool, count)) for name, config in sets.items()}


def run_model(path: Path, scenes: list[Scene], threads: int) -> tuple[Metrics, float, list[Any]]:
    """COCO's metrics, the median seconds per scene, and each scene's detections."""
    model = open_model(path, threads=threads)
    info = model.info.inputs[0]
    options = DetectOptions(threshold=EVAL_SCORE)
    found, seconds = [], []
    for scene in scenes:
        image = ((scene.image[None, None] / 255.0 - info.mean) / info.std).astype(np.float32)
        start = time.perf_counter()
        found.append(detect(model, image, options))
        seconds.append(time.perf_counter() - start)
    if len(model.info.labels or ()) == 1:  # a binary detector (Viola-Jones'): any digit
        agnostic = [replace(s, classes=np.zeros_like(s.classes)) for s in scenes]
        return evaluate(agnostic, found, 1), statistics.median(seconds), found
    return evaluate(scenes, found, 10), statistics.median(seconds), found


def macs(path: Path, shapes: list[tuple[int, ...]]) -> int:
    """Multiply-adds of Conv, Gemm and MatMul nodes, summed over runs at these input shapes."""
    total = 0
    for shape in shapes:
        model = onnx.load(str(path))
        graph_input = model.graph.input[0]
        dims = graph_input.type.tensor_type.shape.dim
        for d, n in zip(dims, shape, strict=True):
            d.ClearField("dim_param")
            d.dim_value = n
        inferred = shape_inference.infer_shapes(model)
        sizes = {
            v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
            for v in (*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input)
        }
        # a fixed kernel is a computed tensor (its shape inferred), not an initializer
        weights = sizes | {t.name: list(t.dims) for t in inferred.graph.initializer}
        for node in inferred.graph.node:
            out = sizes.get(node.output[0])
            if out and out[0] == 0:  # a batch that inference lost (after a Reshape): one scene
                out = [1, *out[1:]]
            if node.op_type == "Conv" and out and node.input[1] in weights:
                w = weights[node.input[1]]  # (out, in/groups, kh, kw)
                total += int(np.prod(out)) * int(np.prod(w[1:]))
            elif node.op_type in ("Gemm", "MatMul") and out and node.input[1] in weights:
                total += int(np.prod(out)) * int(weights[node.input[1]][0])
    return total


def region_macs(path: Path) -> int | None:
    """netspec's own count for a file whose spec pools regions (R-CNN's family: its layers
    after the pooling run once per region, on a batch that ONNX shape inference loses), the
    proposals' K regions each; None for any other file."""
    from netspec.errors import NetspecError
    from netspec.ops import REGISTRY
    from netspec.probe import open_probe

    try:
        compiled = open_probe(path).compiled
    except NetspecError:
        return None
    pools = any(REGISTRY[node.op].makes_rois for node in compiled.graph.nodes)
    return compiled.totals.macs if pools else None


def parameters(path: Path) -> int:
    """The trainable parameters of the spec the file carries, else its initializers' values."""
    from netspec.errors import NetspecError
    from netspec.probe import open_probe

    try:
        return open_probe(path).compiled.totals.trainable_params
    except NetspecError:
        model = onnx.load(str(path))
        return sum(int(np.prod(t.dims)) for t in model.graph.initializer)


def training_minutes(path: Path) -> str:
    """Minutes of training from the run's metrics.csv beside the file, or "-"."""
    metrics = path.parent / "metrics.csv"
    if not metrics.is_file():
        return "-"
    with metrics.open(newline="", encoding="utf-8") as f:
        seconds = [float(row["seconds"]) for row in csv.DictReader(f) if row.get("seconds")]
    return f"{sum(seconds) / 60:.1f}" if seconds else "-"


def pyramid_shapes(path: Path, scene: tuple[int, int]) -> list[tuple[int, ...]]:
    """The input shapes one scene runs at: a sliding window's pyramid, else the input's."""
    from netspec.runtime.decoders.sliding_window import SlidingWindow
    from netspec.runtime.detect import SCALES, detector

    model = open_model(path)
    channels = int(model.info.inputs[0].shape[0])
    window = detector(model.info, str(path)).params
    if isinstance(window, SlidingWindow):
        sizes = [(round(scene[0] * s), round(scene[1] * s)) for s in SCALES]
        return [(1, channels, h, w) for h, w in sizes if h >= window.window[0]]
    return [(1, channels, *scene)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--mnist", type=Path, default=MNIST)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    sets = scene_sets(args.count, args.seed, args.mnist)
    print(
        "| model | test scenes | mAP@0.5 | mAP@0.5:0.95 | ORT ms per scene | MACs per scene "
        "| parameters | training minutes |"
    )
    print("|---|---|---|---|---|---|---:|---:|")
    for path in args.models:
        work = region_macs(path) or macs(path, pyramid_shapes(path, (128, 128)))
        facts = f"{parameters(path):,} | {training_minutes(path)}"
        for name, scenes in sets.items():
            metrics, seconds, _ = run_model(path, scenes, args.threads)
            print(
                f"| {path} | {name} ({len(scenes)}) | {metrics.map50:.3f} | {metrics.map:.3f} "
                f"| {seconds * 1e3:.2f} | {work / 1e6:.1f}M | {facts} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
