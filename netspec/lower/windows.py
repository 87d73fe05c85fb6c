"""`edge_windows` in torch: an image to a RoI set of its windows of most edge contrast
(netspec.ops.windows says what each number is).

The windows are fixed by the image's size, so `EdgeWindows` holds them as buffers: each
window's six boxes (itself, it grown by the ring, the four strips along its sides) as the
indices of their corners in the flattened integral image, and one over each area. The
edges, their integral image and the scores are computed in float64 (exact sums, rounded
once, so that PyTorch and ONNX Runtime rank the windows alike); the ranking, the
suppression and the rows are `proposals'` own (netspec.lower.proposals), and so is putting
the true boxes among the rows while a two-stage head trains (`TakesTruth`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional

from netspec.ir import Shape
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.lower.proposals import TakesTruth, anchors, fixed_rows, nms
from netspec.lower.ssd import ranked
from netspec.ops.windows import EdgeWindowsPlaced

EPS = 1e-6  # keeps a window without edges, inside and around, at score 0


def _half_up(x: Tensor) -> Tensor:
    """Rounded to the nearest whole number, halves up."""
    return torch.floor(x + 0.5)


def window_boxes(
    sizes: Sequence[tuple[float, float]],
    cells: tuple[int, int],
    start: tuple[float, float],
    stride: int,
    image: tuple[int, int],
    grow: tuple[float, float],
) -> Tensor:
    """Every window's six boxes ``(L, 6, 4)``, x1, y1, x2, y2 in whole pixels: the window and
    it grown by ``grow[0]``·side / 2 on each edge, both clipped to the image; then the strips
    ``grow[1]`` of the clipped window's side thick (at least a pixel) along the inside of its
    left, right, top and bottom edges. The windows are in `anchors`' order (centre by centre,
    size by size, ratio by ratio)."""
    centres = anchors(sizes, cells, start, (stride, stride)).double()  # cx, cy, w, h
    side = _half_up(centres[:, 2:])
    low = _half_up(centres[:, :2] - side / 2)
    out = _half_up(grow[0] * side / 2)
    h, w = image
    limit = torch.tensor([w, h, w, h], dtype=torch.float64)
    inner = torch.minimum(torch.cat([low, low + side], 1).clamp(min=0), limit)
    outer = torch.minimum(torch.cat([low - out, low + side + out], 1).clamp(min=0), limit)
    x1, y1, x2, y2 = inner.unbind(1)
    tx, ty = _half_up(grow[1] * (inner[:, 2:] - inner[:, :2])).clamp(min=1).unbind(1)
    strips = [(x1, y1, x1 + tx, y2), (x2 - tx, y1, x2, y2), (x1, y1, x2, y1 + ty)]
    strips.append((x1, y2 - ty, x2, y2))
    return torch.stack([inner, outer, *(torch.stack(s, 1) for s in strips)], 1)


def _area(boxes: Tensor) -> Tensor:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def edges(x: Tensor) -> Tensor:
    """Images ``(N, C, H, W)`` to their gradient magnitude ``(N, H, W)`` in float64: central
    differences (the border pixel repeated), the mean over channels."""
    padded = functional.pad(x.double(), (1, 1, 1, 1), mode="replicate")
    dx = (padded[..., 1:-1, 2:] - padded[..., 1:-1, :-2]) / 2
    dy = (padded[..., 2:, 1:-1] - padded[..., :-2, 1:-1]) / 2
    return torch.sqrt(dx * dx + dy * dy).mean(1)


class EdgeWindows(TakesTruth):
    """Images ``(N, C, H, W)`` to a RoI set ``(N, keep, 5)``: x1, y1, x2, y2, score."""

    boxes: Tensor  # (L, 4): the windows, in pixels
    # (4·L·6,): the corners y2x2, y1x2, y2x1, y1x1 of each window's boxes in the flat table
    corners: Tensor
    inverse: Tensor  # (L, 6): one over each box's area; the ring's (grown less window), or 0

    def __init__(
        self,
        sizes: Sequence[tuple[float, float]],
        cells: tuple[int, int],
        start: tuple[float, float],
        stride: int,
        image: tuple[int, int],
        choice: tuple[int, int, float, float, float],
    ) -> None:
        super().__init__()
        self.pre, self.keep, self.iou, ring, band = choice  # candidates, kept, IoU, growths
        boxes = window_boxes(sizes, cells, start, stride, image, (ring, band))
        areas = _area(boxes)
        areas[:, 1] -= areas[:, 0]  # the ring, where the window did not fill the image
        inverse = torch.where(areas > 0, 1 / areas, 0)
        x1, y1, x2, y2 = boxes.long().unbind(-1)
        width = image[1] + 1
        corners = torch.stack([y2 * width + x2, y1 * width + x2, y2 * width + x1, y1 * width + x1])
        self.register_buffer("boxes", boxes[:, 0].float(), persistent=False)
        self.register_buffer("corners", corners.reshape(-1), persistent=False)
        self.register_buffer("inverse", inverse, persistent=False)

    def scores(self, x: Tensor) -> Tensor:
        """Each window's edge contrast ``(N, L)``: the densities in it and along its sides,
        each against its ring's."""
        n = x.shape[0]
        table = functional.pad(edges(x).cumsum(1).cumsum(2), (1, 0, 1, 0)).reshape(n, -1)
        at = table[:, self.corners].reshape(n, 4, -1, 6)  # (N, 4, L, 6)
        sums = at[:, 0] - at[:, 1] - at[:, 2] + at[:, 3]  # each box's sum
        sums = torch.cat([sums[..., :1], sums[..., 1:2] - sums[..., :1], sums[..., 2:]], -1)
        density = sums * self.inverse  # window, ring, left, right, top, bottom
        inner, ring, sides = density[..., 0], density[..., 1], density[..., 2:].amin(-1)
        contrast = inner / (inner + ring + EPS) * sides / (sides + ring + EPS)
        return torch.where(self.inverse[:, 1] > 0, contrast, 0).float()

    def forward(self, x: Tensor) -> Tensor:
        top, order = ranked(self.scores(x), self.pre)  # (N, pre), best first
        boxes = self.boxes[order]  # (N, pre, 4)
        chosen = nms(boxes, top, self.keep, self.iou, 0.0)  # a window without edges: never
        return self.with_truth(fixed_rows(chosen, boxes, top, self.keep))


def _edge_windows(p: EdgeWindowsPlaced, ins: Sequence[Shape], out: Shape) -> Lowered:
    q = p.params
    choice = (p.pre, q.keep, q.iou, q.ring, q.band)
    args = (tuple(q.window_sizes()), p.cells, p.start, q.stride, p.image, choice)
    return Lowered(Call(EdgeWindows, args))


BUILDERS: dict[str, Builder] = {"edge_windows": _edge_windows}
