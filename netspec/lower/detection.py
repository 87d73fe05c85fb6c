"""A detection head's decoding in torch (YOLO v1): from the network's raw grid map to boxes
in input pixels and class-specific confidences. Training (`netspec.tasks.yolo`) and export
(the ONNX graph holds this decoding after the network) share it, so they cannot differ.
"""

from __future__ import annotations

import torch
from torch import nn

from netspec.ops.detection import Head


def cells(out: torch.Tensor, head: Head) -> tuple[torch.Tensor, torch.Tensor]:
    """The raw map as ``(N, S, S, B, 5)`` boxes and ``(N, S, S, C)`` class probabilities."""
    n, s = out.shape[0], head.grid
    cells = out.permute(0, 2, 3, 1)
    return cells[..., : head.boxes * 5].reshape(n, s, s, head.boxes, 5), cells[
        ..., head.boxes * 5 :
    ]


def corners(box: torch.Tensor, head: Head) -> torch.Tensor:
    """``(..., S, S, [B,] 4)`` cell-relative (x, y, w, h) -> corners in fractions of the image."""
    s = head.grid
    idx = torch.arange(s, device=box.device, dtype=box.dtype)
    extra = box.dim() - 4  # 1 with a predictor axis
    shape = (s, 1) + (1,) * extra
    cx = (box[..., 0] + idx.view(1, s, *(1,) * extra)) / s
    cy = (box[..., 1] + idx.view(*shape)) / s
    w, h = box[..., 2], box[..., 3]
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)


def decode(out: torch.Tensor, head: Head) -> tuple[torch.Tensor, torch.Tensor]:
    """Every predicted box of raw maps ``(N, B*5+C, S, S)``: corners ``(N, S*S*B, 4)`` in
    input pixels (x1, y1, x2, y2), and class-specific confidences ``(N, S*S*B, C)``, the
    paper's Pr(class | object) * confidence. Boxes are ordered cell by cell (row-major),
    predictor by predictor within a cell."""
    n = out.shape[0]
    boxes, probs = cells(out.float(), head)
    pred = torch.cat([boxes[..., 0:2], boxes[..., 2:4] ** 2], -1)
    ih, iw = head.image
    scale = torch.tensor([iw, ih, iw, ih], device=out.device, dtype=pred.dtype)
    xyxy = corners(pred, head) * scale  # (N, S, S, B, 4)
    scores = boxes[..., 4:5] * probs[..., None, :]  # (N, S, S, B, C)
    return xyxy.reshape(n, -1, 4), scores.reshape(n, -1, head.classes)


class Decoded(nn.Module):
    """A network followed by its head's decoding: ``(N, S*S*B, 4 + C)`` per batch, each
    proposed box's corners x1, y1, x2, y2 in input pixels, then its C class-specific
    confidences. Thresholds and suppression come after (`netspec detect`)."""

    def __init__(self, network: nn.Module, head: Head) -> None:
        super().__init__()
        self.network = network
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        boxes, scores = decode(self.network(x), self.head)
        return torch.cat([boxes, scores], -1)
