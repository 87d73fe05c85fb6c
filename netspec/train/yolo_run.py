"""A detector's run (issue 13): what `netspec train` measures and draws for a network that
ends in a detection head, beside the loss every run has.

Every epoch adds the test scenes' mAP@0.5 and mAP@0.5:0.95 (COCO's protocol) to
metrics.csv; the finished run draws pr.png (precision against recall per class) and
detections.png (test scenes with their true and predicted boxes). The weights kept as
best are those of the lowest test loss, as for any run without an accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from netspec.data.scenes import Scene
from netspec.detection.boxes import Detections
from netspec.detection.coco import Metrics, evaluate
from netspec.detection.plots import detections_grid, plot_pr
from netspec.ops.detection import Head
from netspec.train.data import Tensors, normalized
from netspec.train.loop import EVAL_BATCH, Place
from netspec.train.yolo import detect
from netspec.trainspec import TrainConfig

EVAL_SCORE = 0.01  # mAP ranks every box above this; the head's own threshold is for drawing
DRAWN = 16  # test scenes in detections.png


def _head(data: Tensors) -> Head:
    assert data.target.head is not None
    return data.target.head


@torch.no_grad()
def detections(
    module: nn.Module,
    x: torch.Tensor,
    head: Head,
    config: TrainConfig,
    place: Place,
    score: float | None = None,
) -> list[Detections]:
    """Each scene's detections (numpy, netspec.detection's), through the network in eval
    mode, at the head's thresholds unless ``score`` is given."""
    module.eval()
    found: list[Detections] = []
    for i in range(0, len(x), EVAL_BATCH):
        xb = place.batch(normalized(x[i : i + EVAL_BATCH], config.normalize))
        with place.autocast():
            out = module(xb).float()
        found += detect(out, head, score)
    return found


def found(
    module: nn.Module,
    data: Tensors,
    config: TrainConfig,
    place: Place,
    n: int | None = None,
    score: float | None = EVAL_SCORE,
) -> list[Detections]:
    """The first ``n`` test scenes' detections (all by default)."""
    x = data.test_x if n is None else data.test_x[:n]
    return detections(module, x, _head(data), config, place, score)


def truths(data: Tensors, n: int | None = None) -> list[Scene]:
    """The first ``n`` test scenes (all by default) with their true boxes and classes."""
    images = (data.test_x[:n, 0] * 255).round().to(torch.uint8).cpu().numpy()
    out = []
    for image, rows in zip(images, data.test_y[:n].cpu().numpy(), strict=False):
        real = rows[:, 0] >= 0
        out.append(Scene(image, rows[real, 1:].astype(np.float32), rows[real, 0].astype(np.int64)))
    return out


def metrics(module: nn.Module, data: Tensors, config: TrainConfig, place: Place) -> Metrics:
    """COCO's metrics of the detector on the test scenes, every box above EVAL_SCORE ranked."""
    return evaluate(truths(data), found(module, data, config, place), _head(data).classes)


def draw(
    directory: Path, data: Tensors, module: nn.Module, config: TrainConfig, place: Place
) -> list[Path]:
    """pr.png (every test scene) and detections.png (the first DRAWN, at the head's own
    thresholds)."""
    plot_pr(directory / "pr.png", metrics(module, data, config, place), data.labels)
    shown = found(module, data, config, place, DRAWN, score=None)
    detections_grid(directory / "detections.png", truths(data, DRAWN), shown, data.labels)
    return [directory / "pr.png", directory / "detections.png"]
