"""`ssd` in torch: the head's rows (`SsdRows`, what the network outputs and `loss ssd`
trains), and the decoding its exported graph appends (`SsdDecoding`): offsets on default
boxes to boxes in input pixels, class scores, and the boxes kept, per class suppressed,
as a fixed number of rows (netspec.ops.ssd says what each number is). Its builder is this
module's ``BUILDERS`` entry, which `netspec.lower.discover` collects.

The choice (`choose`) is greedy non-maximum suppression per class in plain tensor
operations of fixed shapes, which trace to standard ONNX: the `CANDIDATES * keep` best
(box, class) pairs, best first (equal scores in their order, class by class), which pair
suppresses which (same class, IoU above `iou`), then `keep` steps of "keep the first pair
still alive and drop those it suppresses". That is the choice, in the same order, of
netspec's one NMS (`netspec.detection.boxes`, `Detections.suppressed`) over those pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from netspec.ir import Shape
from netspec.kinds import Site
from netspec.lower.detection import Exported
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.ops.ssd import DELTAS, VARIANCES, Ssd, SsdParams, ssd_of

EMPTY = -1.0  # the class of a row that holds no box
# The (box, class) pairs of the best scores that suppression considers, per row kept: SSD's
# 200 before suppression for 50 kept, a bound on the graph's work.
CANDIDATES = 4
# What an index takes off its score in the sorting key (`ranked`): a step float64 keeps at
# 1.0, and 13,440 of them (10 classes of 1,344 boxes) under float32's resolution at 0.01.
TIE_STEP = 2.0**-50
# The largest log-size offset decoded (torchvision's bbox_xform_clip): exp of it is 62.5
# times the default box, and a larger one would overflow float32 into inf.
MAX_LOG_SIZE = 4.135


class SsdRows(nn.Module):
    """Maps ``(N, A*F, H, W)``, finest first, as one ``(N, sum of H*W*A, F)`` tensor of rows:
    map by map, position by position (row-major), box by box (F numbers a box)."""

    def __init__(self, fields: int) -> None:
        super().__init__()
        self.fields = fields

    def forward(self, *maps: torch.Tensor) -> torch.Tensor:
        rows = [m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, self.fields) for m in maps]
        return torch.cat(rows, 1)


def priors(head: Ssd, device: torch.device | None = None) -> torch.Tensor:
    """The head's default boxes ``(R, 4)``: cx, cy, w, h as fractions of the input."""
    return torch.tensor(head.priors(), dtype=torch.float32, device=device).reshape(-1, 4)


def corners(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 4)`` cx, cy, w, h -> x1, y1, x2, y2."""
    half = boxes[..., 2:] / 2
    return torch.cat([boxes[..., :2] - half, boxes[..., :2] + half], -1)


def decode_boxes(deltas: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
    """Offsets ``(..., R, 4)`` on default boxes ``(R, 4)`` (cx, cy, w, h) to the boxes they
    say, cx, cy, w, h in the default boxes' units (SSD's variances undone)."""
    centre = default[:, :2] + deltas[..., :2] * VARIANCES[0] * default[:, 2:]
    log_size = (deltas[..., 2:] * VARIANCES[1]).clamp(max=MAX_LOG_SIZE)
    return torch.cat([centre, default[:, 2:] * torch.exp(log_size)], -1)


def pairwise(boxes: torch.Tensor) -> torch.Tensor:
    """IoU of every corner box ``(N, M, 4)`` with every other: ``(N, M, M)``; 0 without area."""
    top_left = torch.maximum(boxes[:, :, None, :2], boxes[:, None, :, :2])
    bottom_right = torch.minimum(boxes[:, :, None, 2:], boxes[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area = (boxes[..., 2:] - boxes[..., :2]).clamp(min=0).prod(-1)
    union = area[:, :, None] + area[:, None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def ranked(scores: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` best of each row of ``scores`` ``(N, L)``, best first, equal scores in
    their order: (scores, indices), each ``(N, count)``. Sorting keys made unique (each
    score less a share of its index far below float32's resolution) keep torch's top-k and
    ONNX's TopK to one order without a stable sort, which the ONNX export lacks."""
    index = torch.arange(scores.shape[1], device=scores.device, dtype=torch.float64)
    keys = scores.to(torch.float64) - index * TIE_STEP
    order = keys.topk(count, 1).indices
    return scores.gather(1, order), order


def choose(
    boxes: torch.Tensor, scores: torch.Tensor, floor: float, iou: float, keep: int
) -> torch.Tensor:
    """Boxes ``(N, R, 4)`` and class scores ``(N, R, C)`` to ``(N, keep, 6)`` rows (x1, y1,
    x2, y2, score, class), best first: of the ``CANDIDATES * keep`` best (box, class) pairs,
    every one of at least ``floor``, suppressed per class above IoU ``iou``; the rows after
    the last box hold zeros and class -1."""
    n, r, c = scores.shape
    m = min(c * r, CANDIDATES * keep)
    score, order = ranked(scores.transpose(1, 2).reshape(n, c * r), m)  # class by class
    cls, box = order // r, order % r
    boxes = boxes.gather(1, box[..., None].expand(n, m, 4))  # (N, M, 4), best first
    same = cls[:, :, None] == cls[:, None, :]
    drops = (pairwise(boxes) > iou) & same  # (N, M, M): the first drops the second
    # and itself (a float eye: ONNX Runtime has no boolean EyeLike, which a traced m needs)
    drops = drops | (torch.eye(m, device=boxes.device) > 0)
    alive = score >= floor
    picks, found = [], []
    for _ in range(keep):  # the first alive (the best left) is kept; it drops its own
        first = alive.to(torch.float32).argmax(1, keepdim=True)  # (N, 1)
        found.append(alive.gather(1, first))
        picks.append(first)
        alive = alive & ~drops.gather(1, first[..., None].expand(n, 1, m))[:, 0]
    at, held = torch.cat(picks, 1), torch.cat(found, 1)  # (N, keep)
    rows = torch.cat(
        [
            boxes.gather(1, at[..., None].expand(n, keep, 4)),
            score.gather(1, at)[..., None],
            cls.gather(1, at)[..., None].to(boxes.dtype),
        ],
        -1,
    )
    empty = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, EMPTY], device=boxes.device)
    return torch.where(held[..., None], rows, empty)


class SsdDecoding(nn.Module):
    """An `ssd` head's rows ``(N, R, 5 + C)`` to its file's ``(N, keep, 6)`` detections: each
    default box's offsets decoded to corners in input pixels, softmax class scores without
    the background, then `choose`."""

    default: torch.Tensor  # (R, 4): the default boxes, cx, cy, w, h as fractions of the input
    pixels: torch.Tensor  # (4,): the input's width, height, width, height

    def __init__(self, head: Ssd) -> None:
        super().__init__()
        self.head = head
        h, w = head.image
        self.register_buffer("default", priors(head), persistent=False)
        pixels = torch.tensor([w, h, w, h], dtype=torch.float32)
        self.register_buffer("pixels", pixels, persistent=False)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        boxes = corners(decode_boxes(rows[..., :DELTAS], self.default)) * self.pixels
        scores = torch.softmax(rows[..., DELTAS:], -1)[..., 1:]
        head = self.head
        return choose(boxes, scores, head.floor, head.iou, head.keep)


def ssd_decoding(site: Site) -> Exported | None:
    """`ssd`'s exported graph: the rows decoded and chosen, kind `detections`."""
    head = ssd_of(site.params, site.inputs, site.image)
    if head is None:
        return None
    return Exported(SsdDecoding(head), "detections", (head.keep, 6))


def _ssd(p: SsdParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    """The maps as rows; the exported graph decodes and chooses them (`ssd_decoding`)."""
    return Lowered(Call(SsdRows, (p.fields,)), decode=ssd_decoding)


BUILDERS: dict[str, Builder] = {"ssd": _ssd}
