"""YOLO v1's loss (Redmon, Divvala, Girshick & Farhadi 2016) in torch: boxes drawn into the
grid a detection head predicts, and the paper's sum-squared loss (netspec.tasks.boxes trains
with it).

Boxes arrive as one padded tensor per batch, ``(N, K, 5)``: ``class, x1, y1, x2, y2`` in
input pixels, ``class = -1`` for the rows an image with fewer than K boxes leaves empty.
The network's raw map is ``(N, B*5+C, S, S)``, each cell's channels laid out as
`netspec.ops.detection` says: ``x y sqrt(w) sqrt(h) confidence`` for each of B boxes, then C
class probabilities; (x, y) is the centre within its cell, (w, h) fractions of the image.

The loss, for one image, over cells i and predictors j (1_ij: cell i holds a box's centre
and j is its responsible predictor, the one of the cell's B whose box overlaps the true box
most; 1_i: cell i holds a centre):

    lambda_coord * sum 1_ij [(x - x^)^2 + (y - y^)^2]
  + lambda_coord * sum 1_ij [(sqrt w - sqrt w^)^2 + (sqrt h - sqrt h^)^2]
  + sum 1_ij (IoU - C^)^2 + lambda_noobj * sum (1 - 1_ij) C^^2
  + sum 1_i sum_c (p(c) - p^(c))^2

The confidence target of a responsible predictor is its IoU with the true box (detached),
as the paper defines confidence. A cell holds one box: when two centres fall in one cell,
the first box of the list is the one it learns (the paper's grid has the same limit).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from netspec.lower.detection import cells, corners
from netspec.ops.detection import Head


@dataclass(frozen=True)
class Grid:
    """Boxes drawn into the grid: which cells hold a centre, and what they should predict."""

    obj: torch.Tensor  # (N, S, S) bool: the cell holds a box's centre
    box: torch.Tensor  # (N, S, S, 4): x, y within the cell (0..1), w, h of the image (0..1)
    cls: torch.Tensor  # (N, S, S) int64: the box's class (0 where no box)


def encode(y: torch.Tensor, head: Head) -> Grid:
    """The grid a batch of padded boxes ``(N, K, 5)`` in pixels asks the head for."""
    n, k = y.shape[0], y.shape[1]
    s = head.grid
    ih, iw = head.image
    obj = torch.zeros(n, s, s, dtype=torch.bool, device=y.device)
    box = torch.zeros(n, s, s, 4, dtype=torch.float32, device=y.device)
    cls = torch.zeros(n, s, s, dtype=torch.int64, device=y.device)
    rows = torch.arange(n, device=y.device)
    for i in reversed(range(k)):  # the first box of a cell is written last, and stays
        c, x1, y1, x2, y2 = y[:, i].float().unbind(1)
        valid = c >= 0
        cx, cy = (x1 + x2) / 2 / iw * s, (y1 + y2) / 2 / ih * s  # in cells
        col = cx.floor().clamp(0, s - 1).long()
        row = cy.floor().clamp(0, s - 1).long()
        r, rr, cc = rows[valid], row[valid], col[valid]
        obj[r, rr, cc] = True
        cls[r, rr, cc] = c[valid].long()
        fields = torch.stack([cx - col, cy - row, (x2 - x1) / iw, (y2 - y1) / ih], 1)
        box[r, rr, cc] = fields[valid]
    return Grid(obj, box, cls)


def target_map(y: torch.Tensor, head: Head) -> torch.Tensor:
    """A perfect raw map for these boxes ``(N, B*5+C, S, S)``: each box in its cell's first
    predictor with confidence 1 and its class's probability 1, zeros elsewhere. Decoding it
    gives the boxes back (the round trip the tests check)."""
    grid = encode(y, head)
    n, s = grid.obj.shape[0], head.grid
    out = torch.zeros(n, s, s, head.boxes * 5 + head.classes, device=y.device)
    obj = grid.obj.float()[..., None]
    out[..., 0:2] = grid.box[..., 0:2] * obj
    out[..., 2:4] = grid.box[..., 2:4].clamp(min=0).sqrt() * obj
    out[..., 4] = grid.obj.float()
    onehot = torch.nn.functional.one_hot(grid.cls, head.classes).float()
    out[..., head.boxes * 5 :] = onehot * obj
    return out.permute(0, 3, 1, 2)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Elementwise IoU of corner boxes ``(..., 4)`` (0 where both are empty)."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-9)


def yolo_loss(
    out: torch.Tensor,
    y: torch.Tensor,
    head: Head,
    lambda_coord: float = 5.0,
    lambda_noobj: float = 0.5,
) -> torch.Tensor:
    """The batch's summed sum-squared loss (the formula above) of raw maps against boxes."""
    out = out.float()
    grid = encode(y, head)
    boxes, probs = cells(out, head)  # (N, S, S, B, 5), (N, S, S, C)
    pred = torch.cat([boxes[..., 0:2], boxes[..., 2:4] ** 2], -1)  # sqrt(w) -> w
    truth = corners(grid.box, head)[..., None, :]  # (N, S, S, 1, 4)
    overlap = iou(corners(pred, head), truth).detach()  # (N, S, S, B)
    best = overlap.argmax(-1, keepdim=True)
    resp = torch.zeros_like(overlap, dtype=torch.bool).scatter_(-1, best, True)
    resp &= grid.obj[..., None]  # 1_ij
    r = resp.float()
    target = grid.box[..., None, :]
    xy = ((boxes[..., 0:2] - target[..., 0:2]) ** 2).sum(-1)
    wh = ((boxes[..., 2:4] - target[..., 2:4].clamp(min=0).sqrt()) ** 2).sum(-1)
    conf = boxes[..., 4]
    coord = lambda_coord * (r * (xy + wh)).sum()
    obj = (r * (conf - overlap) ** 2).sum()
    noobj = lambda_noobj * ((1 - r) * conf**2).sum()
    onehot = torch.nn.functional.one_hot(grid.cls, head.classes).float()
    classes = (grid.obj.float()[..., None] * (probs - onehot) ** 2).sum()
    return coord + obj + noobj + classes
