"""COCO's detection metrics, computed by pycocotools' COCOeval (the reference
implementation): AP per class at IoU 0.5 and averaged over IoU 0.5:0.05:0.95, and their
means over the classes that have ground truth (mAP@0.5, mAP@0.5:0.95).

Ground truth is anything with ``boxes`` (float ``(N, 4)`` x1, y1, x2, y2 in pixels) and
``classes`` (int ``(N,)``), such as netspec.data.scenes.Scene; detections are
netspec.detection.boxes.Detections, which add ``scores`` (float ``(N,)``). One of each per
image, in the same order. Boxes are given by their pixel
edges (a 10-pixel-wide box has x2 - x1 = 10), COCO's own convention, so no +1 anywhere.

COCOeval keeps the 100 best-scoring detections of each image (maxDets=100) and the "all"
area range; its prints are silenced.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from netspec.detection.boxes import Detections
from netspec.errors import DataError

__all__ = ["Metrics", "Truth", "evaluate", "recall_points"]

MAX_DETS = 100  # COCOeval's maxDets[2]: the detections of each image it keeps
ALL_AREAS = 0  # COCOeval's areaRng index for "all"


class Truth(Protocol):
    """The true boxes of one image."""

    @property
    def boxes(self) -> npt.NDArray[Any]: ...

    @property
    def classes(self) -> npt.NDArray[Any]: ...


@dataclass(frozen=True)
class Metrics:
    """mAP@0.5 and mAP@0.5:0.95 over the classes with ground truth, AP per class, and the
    precision at COCO's 101 recall points at IoU 0.5 for each class (for pr.png; -1 where a
    class has no ground truth)."""

    map50: float
    map: float
    per_class: dict[int, tuple[float, float]]  # class -> (AP@0.5, AP@0.5:0.95)
    precision50: npt.NDArray[np.float64] = field(repr=False)  # (101, classes)

    def as_dict(self, labels: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-ready: overall and per-class numbers, classes named by ``labels``."""
        name = (lambda c: labels[c]) if labels else str
        return {
            "mAP@0.5": self.map50,
            "mAP@0.5:0.95": self.map,
            "per_class": {
                name(c): {"AP@0.5": a50, "AP@0.5:0.95": a} for c, (a50, a) in self.per_class.items()
            },
        }


def recall_points() -> npt.NDArray[np.float64]:
    """COCO's 101 recall thresholds 0, 0.01, .., 1 (the x axis of precision50)."""
    return np.linspace(0.0, 1.0, 101)


def _xywh(boxes: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _check(image: int, item: Truth, scores: npt.NDArray[np.float64] | None, classes: int) -> None:
    """Refuse what COCOeval would take silently: mismatched lengths, unknown classes, NaNs."""
    what = "ground truth" if scores is None else "detections"
    n = len(item.classes)
    boxes = np.asarray(item.boxes, np.float64).reshape(-1, 4)
    if len(boxes) != n or (scores is not None and len(scores) != n):
        raise DataError(f"{what} of image {image}: boxes, classes and scores differ in length")
    c = np.asarray(item.classes)
    if n and (int(c.min()) < 0 or int(c.max()) >= classes):
        raise DataError(f"{what} of image {image}: a class out of 0..{classes - 1}")
    if not np.isfinite(boxes).all() or (scores is not None and not np.isfinite(scores).all()):
        raise DataError(f"{what} of image {image}: a box or score that is not finite")


def _dataset(
    items: Sequence[Truth], classes: int, scored: Sequence[Detections] | None = None
) -> dict[str, Any]:
    """A COCO dataset dict of ``items`` (image ids 0.., annotation ids from 1), with the
    scores of ``scored`` (the same items, as detections) when given."""
    annotations: list[dict[str, Any]] = []
    for image, item in enumerate(items):
        scores = None if scored is None else np.asarray(scored[image].scores, np.float64)
        _check(image, item, scores, classes)
        kinds = np.asarray(item.classes).tolist()
        for j, (box, c) in enumerate(zip(_xywh(item.boxes).tolist(), kinds, strict=True)):
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": image,
                "category_id": int(c),
                "bbox": box,
                "area": box[2] * box[3],
                "iscrowd": 0,
            }
            if scores is not None:
                ann["score"] = float(scores[j])
            annotations.append(ann)
    return {
        "images": [{"id": i} for i in range(len(items))],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in range(classes)],
    }


def _coco(dataset: dict[str, Any]) -> Any:
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def evaluate(truth: Sequence[Truth], found: Sequence[Detections], classes: int = 10) -> Metrics:
    """COCO's metrics of ``found`` against ``truth`` (one entry per image in each)."""
    from pycocotools.cocoeval import COCOeval

    if len(truth) != len(found):
        raise DataError(f"{len(truth)} images of ground truth but detections for {len(found)}")
    gt = _coco(_dataset(truth, classes))
    dt = _coco(_dataset(found, classes, found))
    e = COCOeval(gt, dt, iouType="bbox")
    with contextlib.redirect_stdout(io.StringIO()):
        e.evaluate()
        e.accumulate()
    precision = np.asarray(e.eval["precision"])[:, :, :, ALL_AREAS, -1]  # (T, R, K)
    assert e.params.maxDets[-1] == MAX_DETS
    per_class = {}
    for k, c in enumerate(e.params.catIds):
        p = precision[:, :, k]
        if (p > -1).all():  # the class has ground truth
            per_class[int(c)] = (float(p[0].mean()), float(p.mean()))
    aps = list(per_class.values())
    return Metrics(
        map50=float(np.mean([a[0] for a in aps])) if aps else 0.0,
        map=float(np.mean([a[1] for a in aps])) if aps else 0.0,
        per_class=per_class,
        precision50=precision[0].astype(np.float64),
    )
