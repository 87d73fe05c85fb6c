"""A detector's run (issue 13): what `netspec train` measures and draws for a network that
ends in a detection head, beside the loss every run has.

Every epoch adds the test scenes' mAP@0.5 and mAP@0.5:0.95 (COCO's protocol) to
metrics.csv; the finished run draws pr.png (precision against recall per class) and
detections.png (test scenes with their true and predicted boxes). The weights kept as
best are those of the lowest test loss, as for any run without an accuracy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from netspec.ops.detection import Head
from netspec.train.data import Tensors
from netspec.train.loop import EVAL_BATCH, Place
from netspec.train.yolo import Detections, detect
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
    """Each scene's detections (on the CPU), through the network in eval mode, at the
    head's thresholds unless ``score`` is given."""
    module.eval()
    found: list[Detections] = []
    for i in range(0, len(x), EVAL_BATCH):
        xb = place.batch((x[i : i + EVAL_BATCH] - config.normalize.mean) / config.normalize.std)
        with place.autocast():
            out = module(xb).float()
        found += [
            Detections(d.boxes.cpu(), d.scores.cpu(), d.classes.cpu())
            for d in detect(out, head, score)
        ]
    return found


def truths(y: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each scene's true (boxes, classes) from the padded ``(N, K, 5)`` rows."""
    out = []
    for rows in y.cpu():
        real = rows[:, 0] >= 0
        out.append((rows[real, 1:], rows[real, 0].long()))
    return out


def map_row(
    module: nn.Module, data: Tensors, config: TrainConfig, place: Place
) -> dict[str, float]:
    """The test scenes' ``test_map50`` and ``test_map`` (mAP@0.5:0.95) for metrics.csv."""
    from netspec.detection.coco import evaluate_map

    found = detections(module, data.test_x, _head(data), config, place, EVAL_SCORE)
    result = evaluate_map(found, truths(data.test_y), _head(data).classes)
    return {"test_map50": result.map50, "test_map": result.map}


def map_text(row: dict[str, float]) -> str:
    """` | mAP@0.5 0.912, mAP@0.5:0.95 0.601` for the epoch's log line."""
    return f" | mAP@0.5 {row['test_map50']:.3f}, mAP@0.5:0.95 {row['test_map']:.3f}"


def draw(
    directory: Path, name: str, data: Tensors, module: nn.Module, config: TrainConfig, place: Place
) -> list[Path]:
    """pr.png and detections.png of the test scenes."""
    from netspec.detection import plots

    head = _head(data)
    found = detections(module, data.test_x, head, config, place, EVAL_SCORE)
    truth = truths(data.test_y)
    plots.pr_curves(directory / "pr.png", found, truth, data.labels, name)
    shown = [d for d in detections(module, data.test_x[:DRAWN], head, config, place)]
    images = data.test_x[:DRAWN, 0].cpu().numpy()
    plots.detections(directory / "detections.png", images, shown, truth[:DRAWN], data.labels, name)
    return [directory / "pr.png", directory / "detections.png"]
