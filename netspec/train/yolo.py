"""A detection head's raw maps to each image's detections: decoded in torch, then boxes
above a score and class-wise non-maximum suppression in numpy (netspec.detection.boxes's
`select`, the one NMS, as `netspec detect` applies it to the exported file's output).
The mAP a detector's run measures on its test scenes (netspec.train.yolo_run) ranks these;
training itself is netspec.tasks.boxes.
"""

from __future__ import annotations

import torch

from netspec.detection.boxes import Detections, select
from netspec.lower.detection import decode
from netspec.ops.detection import Head


def detect(
    out: torch.Tensor, head: Head, score: float | None = None, overlap: float | None = None
) -> list[Detections]:
    """Each image's boxes from raw maps: every (box, class) whose class-specific confidence
    reaches ``score`` (the head's threshold unless given), then non-maximum suppression per
    class at IoU ``overlap`` (the head's unless given), best first; numpy, on the CPU."""
    keep_score = head.score if score is None else score
    keep_iou = head.iou if overlap is None else overlap
    boxes, scores = (t.detach().float().cpu().numpy() for t in decode(out, head))
    return [select(b, s, keep_score, keep_iou) for b, s in zip(boxes, scores, strict=True)]
