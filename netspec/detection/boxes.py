"""Boxes as numpy arrays: corners (`xyxy`: x1, y1, x2, y2 in pixels, x to the right, y
down), their areas and overlaps (IoU), greedy non-maximum suppression per class, and
`Detections`, what a detector found in one image.

A box array is float32 (N, 4); scores are (N,) and classes (N,) int64. Nothing here
imports anything but numpy, so the runtime (`netspec detect`, `netspec eval` on scenes)
and training's mAP share one NMS (`nms_per_class`, through `select`) and one box type.

>>> a = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)
>>> [[round(float(v), 3) for v in row] for row in iou(a, a)]
[[1.0, 0.333], [0.333, 1.0]]
>>> nms(a, np.array([0.9, 0.8], np.float32), 0.3).tolist()
[0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Boxes = npt.NDArray[np.float32]
Floats = npt.NDArray[np.float32]
Ints = npt.NDArray[np.int64]


def as_boxes(values: npt.ArrayLike) -> Boxes:
    """Any (N, 4) numbers as float32 boxes; (0, 4) for nothing."""
    boxes = np.asarray(values, np.float32).reshape(-1, 4)
    return boxes


def area(boxes: Boxes) -> Floats:
    """Each box's area; a box whose corners are the wrong way round has none."""
    wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
    out: Floats = (wh[:, 0] * wh[:, 1]).astype(np.float32)
    return out


def iou(a: Boxes, b: Boxes) -> Floats:
    """Intersection over union of every box of `a` with every box of `b`: (len(a), len(b)).
    Two boxes without area overlap by 0."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(bottom_right - top_left, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area(a)[:, None] + area(b)[None, :] - inter
    out: Floats = np.where(union > 0, inter / np.where(union > 0, union, 1), 0).astype(np.float32)
    return out


def nms(boxes: Boxes, scores: Floats, threshold: float) -> Ints:
    """Greedy non-maximum suppression: the indices kept, best score first. Each box is kept
    unless a better-scoring kept box overlaps it by more than `threshold` (IoU); equal
    scores keep their order."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while order.size:
        best, rest = int(order[0]), order[1:]
        kept.append(best)
        order = rest[iou(boxes[best : best + 1], boxes[rest])[0] <= threshold]
    return np.asarray(kept, np.int64)


def nms_per_class(boxes: Boxes, scores: Floats, classes: Ints, threshold: float) -> Ints:
    """`nms` within each class (boxes of different classes never suppress each other): the
    indices kept, best score first."""
    kept = [
        np.flatnonzero(classes == c)[nms(boxes[classes == c], scores[classes == c], threshold)]
        for c in np.unique(classes)
    ]
    if not kept:
        return np.zeros(0, np.int64)
    merged = np.concatenate(kept)
    return np.asarray(merged[np.argsort(-scores[merged], kind="stable")], np.int64)


def xyxy_to_xywh(boxes: Boxes) -> Boxes:
    """Corners to (x, y, width, height) with (x, y) the top-left corner (COCO's form)."""
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1).astype(np.float32)


def xywh_to_xyxy(boxes: Boxes) -> Boxes:
    """(x, y, width, height), (x, y) the top-left corner, to corners."""
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1).astype(np.float32)


def cxcywh_to_xyxy(boxes: Boxes) -> Boxes:
    """(centre x, centre y, width, height) to corners (YOLO's form)."""
    half = boxes[:, 2:] / 2
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1).astype(np.float32)


def clip(boxes: Boxes, height: int, width: int) -> Boxes:
    """Boxes cut to an image of `height` x `width` pixels."""
    limits = np.array([width, height, width, height], np.float32)
    return np.clip(boxes, 0, limits).astype(np.float32)


@dataclass(frozen=True)
class Detections:
    """What a detector found in one image: boxes (xyxy, input pixels), scores in [0, 1],
    and classes (indices into the model's labels), best score first."""

    boxes: Boxes
    scores: Floats
    classes: Ints

    def __len__(self) -> int:
        return len(self.scores)

    @staticmethod
    def empty() -> Detections:
        return Detections(as_boxes([]), np.zeros(0, np.float32), np.zeros(0, np.int64))

    def take(self, index: Ints) -> Detections:
        """The detections at `index`, in that order."""
        return Detections(self.boxes[index], self.scores[index], self.classes[index])

    def at_least(self, score: float) -> Detections:
        """The detections scoring `score` or more, in their order."""
        return self.take(np.flatnonzero(self.scores >= score))

    def suppressed(self, overlap: float, limit: int | None = None) -> Detections:
        """Non-maximum suppression per class at IoU `overlap` (`nms_per_class`): the kept
        detections best first, the first `limit` of them (all without one)."""
        keep = nms_per_class(self.boxes, self.scores, self.classes, overlap)
        return self.take(keep[:limit])

    def clipped(self, height: int, width: int) -> Detections:
        """The boxes cut to an image of `height` x `width` pixels."""
        return Detections(clip(self.boxes, height, width), self.scores, self.classes)

    def records(self, labels: Sequence[str]) -> list[dict[str, Any]]:
        """JSON records (`netspec detect --json`): `xyxy` (input pixels), class, label, score."""
        return [
            {
                "xyxy": [round(float(v), 2) for v in box],
                "class": int(cls),
                "label": label(labels, int(cls)),
                "score": round(float(score), 4),
            }
            for box, score, cls in zip(self.boxes, self.scores, self.classes, strict=True)
        ]

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        if not parts:
            return Detections.empty()
        return Detections(
            as_boxes(np.concatenate([p.boxes for p in parts])),
            np.concatenate([p.scores for p in parts]).astype(np.float32),
            np.concatenate([p.classes for p in parts]).astype(np.int64),
        )


def select(
    boxes: Boxes, scores: Floats, threshold: float, overlap: float, limit: int | None = None
) -> Detections:
    """A single-shot detector's detections in one image: each of its proposed `boxes`
    (N, 4) with each class whose class-specific confidence in `scores` (N, C) reaches
    `threshold`, then non-maximum suppression per class at IoU `overlap`, best first (the
    first `limit`, all without one).

    >>> b = as_boxes([[0, 0, 10, 10], [1, 0, 11, 10]])
    >>> found = select(b, np.array([[0.9, 0.6], [0.8, 0.1]], np.float32), 0.5, 0.5)
    >>> found.classes.tolist(), [round(float(s), 2) for s in found.scores]
    ([0, 1], [0.9, 0.6])
    """
    box, cls = np.nonzero(scores >= threshold)
    found = Detections(
        as_boxes(boxes[box]), scores[box, cls].astype(np.float32), cls.astype(np.int64)
    )
    return found.suppressed(overlap, limit)


def label(labels: Sequence[str], cls: int) -> str:
    """Class `cls`'s name in `labels`, else its number."""
    return labels[cls] if 0 <= cls < len(labels) else str(cls)
