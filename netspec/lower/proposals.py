"""`proposals` in torch: an RPN's maps to a RoI set of a fixed number of boxes per image
(netspec.ops.proposals says what each number is).

Every step is a tensor operation of fixed shape but one: non-maximum suppression, whose
choice has as many boxes as the data leaves. In eager mode `nms` runs ONNX's
NonMaxSuppression as ONNX Runtime defines it (candidates strictly above the score threshold,
best first and, at equal scores, the first; a box dropped when its IoU with a kept one is
strictly above the threshold; a box without area overlaps nothing), and exports as that
operator. The boxes it keeps are then scattered into ``keep`` rows per image (ScatterND), so
an image with no box gets empty rows and one with many its ``keep`` best.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from netspec.ir import Shape
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.lower.ssd import ranked
from netspec.ops.proposals import DELTAS, ProposalsPlaced

EMPTY = -1.0  # the score of a row that holds no box
# The largest log-size offset decoded (torchvision's bbox_xform_clip): a box at most 62.5
# times its anchor, and exp that cannot overflow float32.
MAX_LOG_SIZE = math.log(1000.0 / 16)


def anchors(
    sizes: Sequence[tuple[float, float]],
    cells: tuple[int, int],
    start: tuple[float, float],
    jump: tuple[float, float],
) -> Tensor:
    """Every anchor ``(H·W·A, 4)``: cx, cy, w, h in input pixels, cell by cell (row-major),
    anchor by anchor (``sizes``: each one's width and height), the order of the maps'
    channels; cells centred at ``start`` + i·``jump`` (y, x)."""
    (h, w), (sy, sx), (jy, jx) = cells, start, jump
    ys = sy + jy * torch.arange(h, dtype=torch.float64)
    xs = sx + jx * torch.arange(w, dtype=torch.float64)
    cy, cx = torch.meshgrid(ys, xs, indexing="ij")
    sides = torch.tensor(sizes, dtype=torch.float64).reshape(-1, 2)  # (A, 2): w, h
    a = len(sides)
    centres = torch.stack([cx, cy], -1).reshape(-1, 1, 2).expand(-1, a, 2)
    return torch.cat([centres, sides.expand(h * w, a, 2)], -1).reshape(-1, 4).float()


def iou_matrix(boxes: Tensor) -> Tensor:
    """IoU of corner boxes ``(M, 4)`` with each other, ``(M, M)``, in ONNX Runtime's
    arithmetic: 0 where the boxes do not overlap or one has no area."""
    low = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    high = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    side = high - low
    inter = side[..., 0] * side[..., 1]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = area[:, None] + area[None, :] - inter
    real = (side > 0).all(-1) & (area[:, None] > 0) & (area[None, :] > 0) & (union > 0)
    return torch.where(real, inter / torch.where(real, union, 1), 0)


def _nms_eager(boxes: Tensor, scores: Tensor, keep: int, iou: float, score: float) -> Tensor:
    """ONNX NonMaxSuppression of one class: boxes ``(N, M, 4)``, scores ``(N, 1, M)`` to
    ``(S, 3)`` rows (image, 0, box), image by image, best first."""
    chosen: list[list[int]] = []
    threshold = torch.tensor(iou, dtype=torch.float32)
    for n in range(boxes.shape[0]):
        s = scores[n, 0]
        order = torch.sort(-s, stable=True).indices
        order = order[s[order] > torch.tensor(score, dtype=s.dtype)]
        overlaps = (iou_matrix(boxes[n]) > threshold).cpu().numpy()
        kept: list[int] = []
        for i in order.tolist():
            if len(kept) == keep:
                break
            if not overlaps[i, kept].any():
                kept.append(i)
        chosen += [[n, 0, i] for i in kept]
    return torch.tensor(chosen, dtype=torch.int64).reshape(-1, 3)


class _Nms(torch.autograd.Function):
    """`_nms_eager`, exported as ONNX's NonMaxSuppression."""

    @staticmethod
    def forward(
        ctx: Any, boxes: Tensor, scores: Tensor, keep: int, iou: float, score: float
    ) -> Tensor:
        return _nms_eager(boxes, scores, keep, iou, score)

    @staticmethod
    def symbolic(g: Any, boxes: Any, scores: Any, keep: int, iou: float, score: float) -> Any:
        def const(value: Any, dtype: torch.dtype) -> Any:
            return g.op("Constant", value_t=torch.tensor([value], dtype=dtype))

        return g.op(
            "NonMaxSuppression",
            boxes,
            scores,
            const(keep, torch.int64),
            const(iou, torch.float32),
            const(score, torch.float32),
        )


def nms(boxes: Tensor, scores: Tensor, keep: int, iou: float, score: float) -> Tensor:
    """Boxes ``(N, M, 4)`` (corners) and scores ``(N, M)``: the ``(S, 3)`` rows (image, 0,
    box) ONNX's NonMaxSuppression chooses, at most ``keep`` of each image."""
    out: Tensor = _Nms.apply(boxes, scores[:, None], keep, iou, score)  # type: ignore[no-untyped-call]
    return out


def fixed_rows(chosen: Tensor, boxes: Tensor, scores: Tensor, keep: int) -> Tensor:
    """The chosen ``(S, 3)`` of boxes ``(N, M, 4)`` and scores ``(N, M)`` as ``(N, keep, 5)``
    rows, each image's in the order chosen, the rest empty (zeros, score -1)."""
    n, m = scores.shape
    image, box = chosen[:, 0], chosen[:, 2]
    before = (image[None, :] < image[:, None]).sum(1)  # chosen rows of earlier images
    rank = torch.ones_like(image).cumsum(0) - 1 - before  # the row's place in its image
    at = image * m + box
    rows = torch.cat([boxes.reshape(-1, 4)[at], scores.reshape(-1, 1)[at]], -1)  # (S, 5)
    empty = torch.tensor([0.0, 0.0, 0.0, 0.0, EMPTY], dtype=boxes.dtype, device=boxes.device)
    out = empty.repeat(n * keep, 1)
    out = out.index_put((image * keep + rank,), rows)
    return out.reshape(n, keep, 5)


class TakesTruth(nn.Module):
    """A module that makes RoI sets and, while training, puts the true boxes among them:
    Fast and Faster R-CNN's way of giving the detector its best positives from the first
    step. The task sets `truth` (padded boxes ``(N, G, 5)``: class, x1, y1, x2, y2; class -1
    pads) for one training forward (netspec.tasks.two_stage); it is None otherwise."""

    truth: Tensor | None = None

    def with_truth(self, rows: Tensor) -> Tensor:
        """RoI rows ``(N, keep, 5)``, their last G rows the true boxes (score 1) where an
        image has them, while training with a truth set."""
        if self.truth is None or not self.training:
            return rows
        g = min(self.truth.shape[1], rows.shape[1])
        truth, kept = self.truth[:, :g].to(rows), rows.shape[1] - g
        real = truth[..., :1] >= 0
        boxes = torch.cat([truth[..., 1:], torch.ones_like(truth[..., :1])], -1)
        return torch.cat([rows[:, :kept], torch.where(real, boxes, rows[:, kept:])], 1)


class Proposals(TakesTruth):
    """Objectness ``(N, A, H, W)`` and deltas ``(N, 4A, H, W)`` to a RoI set ``(N, keep, 5)``:
    x1, y1, x2, y2, score."""

    anchors: Tensor  # (H·W·A, 4): cx, cy, w, h in input pixels
    image: Tensor  # (4,): the input's width, height, width, height, what boxes are clipped to

    def __init__(
        self,
        sizes: Sequence[tuple[float, float]],
        cells: tuple[int, int],
        start: tuple[float, float],
        jump: tuple[float, float],
        image: tuple[int, int],
        choice: tuple[int, int, float, float, float],
    ) -> None:
        super().__init__()
        # candidates before suppression, boxes kept, IoU, score above, least side in pixels
        self.pre, self.keep, self.iou, self.score, self.min_size = choice
        self.register_buffer("anchors", anchors(sizes, cells, start, jump), persistent=False)
        h, w = image
        self.register_buffer("image", torch.tensor([w, h, w, h], dtype=torch.float32), False)

    def boxes(self, deltas: Tensor) -> Tensor:
        """Deltas ``(N, L, 4)`` on the anchors to corner boxes clipped to the input."""
        a = self.anchors
        centre = a[:, :2] + deltas[..., :2] * a[:, 2:]
        size = a[:, 2:] * torch.exp(deltas[..., 2:].clamp(max=MAX_LOG_SIZE))
        corners = torch.cat([centre - size / 2, centre + size / 2], -1)
        return torch.minimum(corners.clamp(min=0), self.image)

    def forward(self, objectness: Tensor, deltas: Tensor) -> Tensor:
        n = objectness.shape[0]
        logits = objectness.permute(0, 2, 3, 1).reshape(n, -1)  # (N, L): cell, then anchor
        # the boxes pass no gradient back to the deltas: the RPN learns them from its own loss
        # (Faster R-CNN's approximate joint training), not through the RoI pooling
        boxes = self.boxes(deltas.detach().permute(0, 2, 3, 1).reshape(n, -1, DELTAS))
        sides = boxes[..., 2:] - boxes[..., :2]
        big = (sides >= self.min_size).all(-1)
        scores = torch.where(big, torch.sigmoid(logits), EMPTY)  # small boxes: never chosen
        top, order = ranked(scores, self.pre)  # (N, pre), best first
        boxes = boxes.gather(1, order[..., None].expand(n, self.pre, 4))
        chosen = nms(boxes, top, self.keep, self.iou, self.score)
        return self.with_truth(fixed_rows(chosen, boxes, top, self.keep))


def _proposals(p: ProposalsPlaced, ins: Sequence[Shape], out: Shape) -> Lowered:
    q = p.params
    sizes = tuple(q.anchor_sizes())
    choice = (p.pre, q.keep, q.iou, q.score, q.min_size)
    return Lowered(Call(Proposals, (sizes, p.cells, p.start, p.jump, p.image, choice)))


BUILDERS: dict[str, Builder] = {"proposals": _proposals}
