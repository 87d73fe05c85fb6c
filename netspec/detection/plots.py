"""Pictures of a detector's results: ``pr.png``, the precision-recall curve of each class
at IoU 0.5 (COCOeval's interpolated precision at its 101 recall points), and
``detections.png``, a grid of test scenes with what was found and what was missed.

In detections.png a detection that matches a true box (same class, IoU >= 0.5, matched
greedily by score as COCO does) is drawn in MATCHED; a true box it found in TRUE; a true
box nothing found (a miss) in MISSED, thick, and a detection that matches nothing (a false
alarm) in FALSE_ALARM, thick; each box has its class written by it (netspec.detection.paint,
the one painter). Matplotlib (Agg, no pyplot state) draws pr.png; Pillow draws the scenes,
pixel for pixel. Writes are atomic.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from netspec.detection.boxes import Detections
from netspec.detection.coco import Metrics, Truth, recall_points
from netspec.detection.paint import Colour, paint_boxes, picture_of
from netspec.fileio import write_bytes

__all__ = ["FALSE_ALARM", "MATCHED", "MISSED", "TRUE", "detections_grid", "match", "plot_pr"]

TRUE: Colour = (60, 200, 75)  # green: a true box that was found
MATCHED: Colour = (0, 150, 255)  # blue: a detection that found a true box
MISSED: Colour = (255, 40, 40)  # red: a true box nothing found
FALSE_ALARM: Colour = (255, 160, 0)  # orange: a detection of nothing
MAX_SCENES = 16
LEGEND_H = 16


class Scene(Truth, Protocol):
    """Ground truth with its picture: ``image`` uint8 ``(H, W)``."""

    @property
    def image(self) -> npt.NDArray[np.uint8]: ...


def match(
    truth: Truth, found: Detections, iou: float = 0.5
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Which detections matched a true box, and which true boxes were matched: greedily in
    order of score, each true box at most once, same class and IoU >= ``iou``."""
    from pycocotools import mask

    tb, db = _xywh(truth.boxes), _xywh(found.boxes)
    hit = np.zeros(len(db), bool)
    seen = np.zeros(len(tb), bool)
    if not len(tb) or not len(db):
        return hit, seen
    overlaps = np.asarray(mask.iou(db, tb, np.zeros(len(tb), np.uint8)))  # (D, T)
    tc, dc = np.asarray(truth.classes), np.asarray(found.classes)
    for d in np.argsort(-np.asarray(found.scores), kind="stable"):
        options = np.where((tc == dc[d]) & ~seen, overlaps[d], -1.0)
        best = int(np.argmax(options))
        if options[best] >= iou:
            hit[d], seen[best] = True, True
    return hit, seen


def _xywh(boxes: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def scene_picture(
    truth: Scene, found: Detections, zoom: int = 2, labels: Sequence[str] | None = None
) -> Image.Image:
    """One scene, ``zoom`` times larger, its true and detected boxes drawn (module doc)."""
    name = (lambda c: labels[c]) if labels else str
    picture = picture_of(truth.image, zoom)
    hit, seen = match(truth, found)
    true_texts = [name(c) for c in np.asarray(truth.classes).tolist()]
    found_texts = [
        f"{name(c)} {s:.2f}"
        for c, s in zip(
            np.asarray(found.classes).tolist(), np.asarray(found.scores).tolist(), strict=True
        )
    ]
    for boxes, texts, ok, colours in (
        (truth.boxes, true_texts, seen, (TRUE, MISSED)),
        (found.boxes, found_texts, hit, (MATCHED, FALSE_ALARM)),
    ):
        paint_boxes(
            picture,
            np.asarray(boxes, np.float32).reshape(-1, 4),
            texts,
            [colours[0] if o else colours[1] for o in ok],
            zoom=zoom,
            widths=[1 if o else 3 for o in ok],
        )
    return picture


def detections_grid(
    path: Path,
    truth: Sequence[Scene],
    found: Sequence[Detections],
    labels: Sequence[str] | None = None,
    zoom: int = 2,
) -> Path:
    """Write detections.png: up to MAX_SCENES scenes in a grid, and a legend below."""
    pictures = [
        scene_picture(t, f, zoom, labels) for t, f in zip(truth[:MAX_SCENES], found, strict=False)
    ]
    cols = max(1, min(4, len(pictures)))
    rows = max(1, math.ceil(len(pictures) / cols))
    cell_w = max([p.width for p in pictures] + [64]) + 4
    cell_h = max([p.height for p in pictures] + [64]) + 4
    grid = Image.new("RGB", (max(cols * cell_w, 420), rows * cell_h + LEGEND_H), (40, 40, 40))
    for i, p in enumerate(pictures):
        grid.paste(p, ((i % cols) * cell_w + 2, (i // cols) * cell_h + 2))
    draw = ImageDraw.Draw(grid)
    x = 4
    for colour, words in (
        (TRUE, "true"),
        (MATCHED, "found"),
        (MISSED, "missed"),
        (FALSE_ALARM, "false alarm"),
    ):
        draw.rectangle((x, rows * cell_h + 4, x + 8, rows * cell_h + 12), fill=colour)
        draw.text((x + 12, rows * cell_h + 2), words, fill=(230, 230, 230))
        x += 24 + 7 * len(words)
    buffer = io.BytesIO()
    grid.save(buffer, format="PNG")
    write_bytes(path, buffer.getvalue())
    return path


def plot_pr(path: Path, metrics: Metrics, labels: Sequence[str] | None = None) -> Path:
    """Write pr.png: precision against recall at IoU 0.5 for each class with ground truth,
    its AP@0.5 in the legend, the mAPs in the title."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    name = (lambda c: labels[c]) if labels else str
    fig = Figure(figsize=(6, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    recall = recall_points()
    for c, (ap50, _) in metrics.per_class.items():
        ax.plot(
            recall, metrics.precision50[:, c], label=f"{name(c)}  AP@0.5 {ap50:.3f}", linewidth=1.5
        )
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.set_title(f"mAP@0.5 {metrics.map50:.3f}   mAP@0.5:0.95 {metrics.map:.3f}")
    ax.grid(alpha=0.3)
    if metrics.per_class:
        ax.legend(loc="lower left", fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    write_bytes(path, buffer.getvalue())
    return path
