"""`two_stage`: the R-CNN family's detection head, regions classified and their boxes refined.

`two_stage(rois, scores, boxes, classes=10)` ends a network that pools a RoI set (`rois`, K
boxes of each image: `proposals`' output, or an input of K x 4 or K x 5) into per-region
tensors: ``scores`` K x (1 + C) class logits (the background first) and ``boxes`` K x 4
offsets of each region's box (dx, dy, dw, dh, Fast R-CNN's parametrization, class-agnostic,
scaled by SSD's variances 0.1 and 0.2). `two_stage(rois, scores, boxes, objectness, deltas,
classes=10)` also takes the region proposal network's two maps that made `rois` (Faster
R-CNN): what `loss faster_rcnn` trains the RPN with beside the detector.

The operation has no weights. Its output is what training reads, one tensor of rows of
10 + C numbers per image: first K region rows (the RoI's x1, y1, x2, y2, score, its 1 + C
logits, its 4 offsets), then, with an RPN, one row per anchor (its logit and 4 deltas, in
the order of `proposals`' anchors, zeros after). The exported graph decodes the region rows
(netspec.lower.two_stage): each RoI's box refined and clipped, softmax class scores without
the background, the scores of at least `floor` suppressed per class above IoU `iou`, the
`keep` best as ``keep x 6`` detections (x1, y1, x2, y2, score, class; class -1 is empty),
which the runtime's `two_stage` decoder shows from `score` on. The loss is
netspec.tasks.two_stage's, its sampling declared by `loss faster_rcnn` (`FasterRcnnLoss`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from netspec.artifact import Decoding
from netspec.ir import OpParams, Shape
from netspec.ops.proposals import DELTAS  # a box's dx, dy, dw, dh
from netspec.ops.registry import (
    RF,
    HeadLoss,
    LossParams,
    OpDef,
    Pos,
    ShapeError,
    register,
    rf_whole,
)
from netspec.ops.ssd import rows_decoding
from netspec.text import fmt_shape

Fraction = Annotated[float, Field(ge=0, le=1)]
Count = Annotated[int, Field(gt=0, le=100_000, strict=True)]
MAX_KEEP = 1000  # detections the exported graph keeps (each a step of its suppression)
ROI_FIELDS = 5  # a region row's x1, y1, x2, y2, score
DETECTOR, WITH_RPN = 3, 5  # the head's inputs without and with the RPN's maps


class TwoStageParams(OpParams):
    """`two_stage(rois, scores, boxes [, objectness, deltas], classes=10 [, score=0.5]
    [, floor=0.01] [, iou=0.5] [, keep=20])`."""

    classes: Pos
    score: Fraction = 0.5
    floor: Annotated[float, Field(gt=0, le=1)] = 0.01
    iou: Fraction = 0.5
    keep: Annotated[int, Field(gt=0, le=MAX_KEEP, strict=True)] = 20

    @property
    def fields(self) -> int:
        """Numbers of a row: the RoI's 5, the 1 + C logits and the 4 offsets."""
        return ROI_FIELDS + 1 + self.classes + DELTAS


class FasterRcnnLoss(LossParams):
    """`loss faster_rcnn rpn_positive=0.7 rpn_negative=0.3 rpn_batch=256 rpn_fraction=0.5
    positive=0.5 negative=0.5 batch=64 fraction=0.25`: the paper's sampling. An anchor is
    positive from IoU `rpn_positive` with a true box (and each true box's best anchors),
    negative below `rpn_negative`; `rpn_batch` anchors per image are drawn, at most
    `rpn_fraction` of them positive. A region is positive from IoU `positive`, background
    below `negative`; `batch` per image, at most `fraction` positive. Between the two
    thresholds a box trains nothing. With `truth` (the default, the papers'), the true boxes
    join the regions while training, in place of the proposals ranked last."""

    rpn_positive: Annotated[float, Field(gt=0, le=1)] = 0.7
    rpn_negative: Fraction = 0.3
    rpn_batch: Count = 256
    rpn_fraction: Fraction = 0.5
    positive: Annotated[float, Field(gt=0, le=1)] = 0.5
    negative: Fraction = 0.5
    batch: Count = 64
    fraction: Fraction = 0.25
    truth: bool = True

    @field_validator("rpn_negative", "negative")
    @classmethod
    def _below(cls, low: float, info: ValidationInfo) -> float:
        """A negative's IoU is below a positive's: no box is both."""
        name = "rpn_positive" if info.field_name == "rpn_negative" else "positive"
        high = info.data.get(name)
        if high is not None and low > high:
            raise PydanticCustomError("ordered", f"Input should be at most {name} ({high:g})")
        return low


@dataclass(frozen=True)
class TwoStage:
    """A `two_stage` head as training and export use it: its regions per image, classes,
    anchors (0 without an RPN), thresholds, and the input's (H, W)."""

    regions: int
    classes: int
    anchors: int
    score: float
    floor: float
    iou: float
    keep: int
    image: tuple[int, int]

    @property
    def fields(self) -> int:
        """Numbers of a row (`TwoStageParams.fields`)."""
        return ROI_FIELDS + 1 + self.classes + DELTAS


def _check(p: TwoStageParams, ins: Sequence[Shape]) -> tuple[int, int]:
    """(K regions, anchors), the inputs' shapes checked against each other."""
    if len(ins) not in (DETECTOR, WITH_RPN):
        raise ShapeError(
            f"two_stage reads 3 tensors (rois, scores, boxes) or 5 (and an RPN's objectness "
            f"and deltas), got {len(ins)}",
            hint="write two_stage(rois, scores, boxes, classes=10)",
        )
    rois, scores, boxes = ins[:DETECTOR]
    if len(rois) != 2 or rois[1] not in (DELTAS, ROI_FIELDS) or not isinstance(rois[0], int):
        raise ShapeError(
            f"two_stage's first input is a RoI set of K x 5 (or K x 4), got {fmt_shape(rois)}",
            hint="give it the output of proposals(...)",
        )
    k = rois[0]
    for what, shape, want in (("scores", scores, 1 + p.classes), ("boxes", boxes, DELTAS)):
        if tuple(shape) != (k, want):
            raise ShapeError(
                f"two_stage's {what} must be {k}x{want} (per region: "
                + (
                    "the background and " + f"{p.classes} classes"
                    if want != DELTAS
                    else "4 offsets"
                )
                + f"), got {fmt_shape(shape)}",
                hint=f"end that branch of the region head with dense {want}",
            )
    if len(ins) == DETECTOR:
        return k, 0
    objectness, deltas = ins[DETECTOR:]
    if len(objectness) != 3 or len(deltas) != 3 or deltas[0] != DELTAS * objectness[0]:
        raise ShapeError(
            f"two_stage's objectness ({fmt_shape(objectness)}) and deltas "
            f"({fmt_shape(deltas)}) must be an RPN's maps: A and 4A maps of the same cells",
            hint="give it the two maps its proposals read",
        )
    if objectness[1:] != deltas[1:] or not all(isinstance(d, int) for d in objectness):
        raise ShapeError(
            f"two_stage's objectness ({fmt_shape(objectness)}) and deltas "
            f"({fmt_shape(deltas)}) must cover the same cells, of known size"
        )
    a, h, w = (int(d) for d in objectness)
    return k, a * h * w


def _shape(p: TwoStageParams, ins: Sequence[Shape]) -> Shape:
    k, anchors = _check(p, ins)
    return (k + anchors, p.fields)


def two_stage_of(params: Any, inputs: Sequence[Shape], image: Shape) -> TwoStage | None:
    """The head a `two_stage` node with these parameters and input shapes describes, over an
    input of per-sample shape ``image`` (None for another operation, or a symbolic size)."""
    h, w = image[-2], image[-1]
    if not (isinstance(params, TwoStageParams) and isinstance(h, int) and isinstance(w, int)):
        return None
    k, anchors = _check(params, inputs)
    return TwoStage(
        regions=k,
        classes=params.classes,
        anchors=anchors,
        score=params.score,
        floor=params.floor,
        iou=params.iou,
        keep=params.keep,
        image=(h, w),
    )


def _decoding(params: Any, shape: Shape, rf: RF, image: Shape) -> Decoding | None:
    """The file's decoding: its `detections` read by the runtime's `two_stage` decoder."""
    if not isinstance(params, TwoStageParams):
        return None
    return rows_decoding("two_stage", params, image)


register(
    OpDef(
        name="two_stage",
        params=TwoStageParams,
        shape=_shape,
        arity=None,
        rf=rf_whole,  # each detection is a region the data chose, classified
        output="detections",
        head=True,
        decoding=_decoding,
        loss=HeadLoss("faster_rcnn", FasterRcnnLoss),
        doc="`two_stage(rois, scores, boxes [, objectness, deltas], classes=10)`: the R-CNN "
        "family's head, each region's 1 + C class scores and 4 box offsets (and the RPN's "
        "maps, which `loss faster_rcnn` trains beside it), decoded to boxes in the graph.",
    )
)
