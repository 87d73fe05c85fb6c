"""`two_stage` in torch: the head's rows (`TwoStageRows`, what the network outputs and
`loss faster_rcnn` trains) and the decoding its exported graph appends (`TwoStageDecoding`):
each region's box refined by its offsets, its class scores, and the boxes kept, per class
suppressed, as a fixed number of rows (netspec.ops.two_stage says what each number is).

The choice is SSD's (`netspec.lower.ssd.choose`): greedy per-class suppression in tensor
operations of fixed shapes, so that one ONNX file holds the anchors, the proposals, their
suppression, the RoI pooling, the heads and this decoding, and ONNX Runtime chooses what
PyTorch chooses.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional

from netspec.ir import Shape
from netspec.kinds import Site
from netspec.lower.detection import Exported
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.lower.ssd import MAX_LOG_SIZE, choose
from netspec.ops.proposals import DELTAS
from netspec.ops.ssd import VARIANCES
from netspec.ops.two_stage import ROI_FIELDS, TwoStage, TwoStageParams, two_stage_of


class TwoStageRows(nn.Module):
    """RoIs ``(N, K, 4 or 5)``, class logits ``(N, K, 1 + C)`` and offsets ``(N, K, 4)`` (and
    an RPN's objectness ``(N, A, H, W)`` and deltas ``(N, 4A, H, W)``) as one ``(N, K [+
    H·W·A], F)`` tensor of rows: the regions', then the anchors' (logit, 4 deltas, zeros)."""

    def __init__(self, fields: int) -> None:
        super().__init__()
        self.fields = fields

    def forward(self, rois: Tensor, scores: Tensor, boxes: Tensor, *rpn: Tensor) -> Tensor:
        if rois.shape[-1] == DELTAS:  # corners without a score: every one a region
            rois = functional.pad(rois, (0, 1), value=1.0)
        rows = [torch.cat([rois.detach(), scores, boxes], -1)]
        if rpn:
            objectness, deltas = rpn
            n = objectness.shape[0]
            logits = objectness.permute(0, 2, 3, 1).reshape(n, -1, 1)  # cell, then anchor
            offsets = deltas.permute(0, 2, 3, 1).reshape(n, -1, DELTAS)
            anchors = torch.cat([logits, offsets], -1)
            rows.append(functional.pad(anchors, (0, self.fields - 1 - DELTAS)))
        return torch.cat(rows, 1)


def to_centres(boxes: Tensor) -> Tensor:
    """``(..., 4)`` x1, y1, x2, y2 -> cx, cy, w, h."""
    return torch.cat([(boxes[..., :2] + boxes[..., 2:]) / 2, boxes[..., 2:] - boxes[..., :2]], -1)


def refine(rois: Tensor, offsets: Tensor, image: Tensor) -> Tensor:
    """Corner boxes ``(..., 4)`` moved by their offsets ``(..., 4)`` (over the variances 0.1
    and 0.2), clipped to ``image`` (width, height, width, height)."""
    box = to_centres(rois)
    centre = box[..., :2] + offsets[..., :2] * VARIANCES[0] * box[..., 2:]
    size = box[..., 2:] * torch.exp((offsets[..., 2:] * VARIANCES[1]).clamp(max=MAX_LOG_SIZE))
    corners = torch.cat([centre - size / 2, centre + size / 2], -1)
    return torch.minimum(corners.clamp(min=0), image)


class TwoStageDecoding(nn.Module):
    """A `two_stage` head's rows ``(N, R, F)`` to its file's ``(N, keep, 6)`` detections:
    each region's box refined, softmax class scores without the background (none for an
    empty RoI, of score -1), then `choose`."""

    image: Tensor  # (4,): the input's width, height, width, height

    def __init__(self, head: TwoStage) -> None:
        super().__init__()
        self.head = head
        h, w = head.image
        self.register_buffer("image", torch.tensor([w, h, w, h], dtype=torch.float32), False)

    def forward(self, rows: Tensor) -> Tensor:
        head = self.head
        regions = rows[:, : head.regions].float()
        logits = regions[..., ROI_FIELDS : ROI_FIELDS + 1 + head.classes]
        boxes = refine(regions[..., :DELTAS], regions[..., -DELTAS:], self.image)
        real = (regions[..., DELTAS] >= 0).to(rows.dtype)[..., None]
        scores = torch.softmax(logits, -1)[..., 1:] * real
        return choose(boxes, scores, head.floor, head.iou, head.keep)


def two_stage_decoding(site: Site) -> Exported | None:
    """`two_stage`'s exported graph: the regions decoded and chosen, kind `detections`."""
    head = two_stage_of(site.params, site.inputs, site.image)
    if head is None:
        return None
    return Exported(TwoStageDecoding(head), "detections", (head.keep, 6))


def _two_stage(p: TwoStageParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    """The head's rows; the exported graph decodes and chooses them (`two_stage_decoding`)."""
    return Lowered(Call(TwoStageRows, (p.fields,)), decode=two_stage_decoding)


BUILDERS: dict[str, Builder] = {"two_stage": _two_stage}
