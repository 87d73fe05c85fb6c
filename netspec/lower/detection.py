"""A head's decoding in torch, and the hook through which export appends it to the network.

A head operation whose exported graph decodes its raw output (to boxes in input pixels, to
the boxes it keeps) says how in its lowering: its builder's `Lowered.decode` is a
`DecodeRule`, which makes from the head's `Site` (netspec.kinds) an `Exported`: the torch
module that follows the network in the exported graph, and the kind and per-sample shape of
the file's output after it (None where a symbolic size leaves them unknown: the network is
exported as it is). `netspec.export.detection` asks the network's head for it and
wraps the network in `Decoded`; it knows no head from another.

`detect`'s decoding (YOLO v1) lives here: from the network's raw grid map to boxes in input
pixels and class-specific confidences. Training (`netspec.tasks.yolo`) and export (the ONNX
graph holds this decoding after the network) share it, so they cannot differ.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from netspec.artifact import OutputKind
from netspec.ir import Shape
from netspec.kinds import Site
from netspec.ops.detection import Head, head_of


@dataclass(frozen=True, eq=False)
class Exported:
    """What a head's exported graph ends with: the decoding `module` applied to the
    network's output, and the `kind` and per-sample `shape` of the file's output it makes."""

    module: nn.Module
    kind: OutputKind
    shape: Shape


# A head's decoding in the exported graph, from where the head sits (`Lowered.decode`).
DecodeRule = Callable[[Site], Exported | None]


class Decoded(nn.Module):
    """A network followed by its head's decoding: what a detector's ONNX file computes."""

    def __init__(self, network: nn.Module, decoding: nn.Module) -> None:
        super().__init__()
        self.network = network
        self.decoding = decoding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.decoding(self.network(x))
        return out


# ---- `detect`: YOLO v1's grid -------------------------------------------------------------


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


class GridDecoding(nn.Module):
    """`detect`'s decoding: ``(N, S*S*B, 4 + C)`` per batch, each proposed box's corners x1,
    y1, x2, y2 in input pixels, then its C class-specific confidences. Thresholds and
    suppression come after (`netspec detect`)."""

    def __init__(self, head: Head) -> None:
        super().__init__()
        self.head = head

    def forward(self, out: torch.Tensor) -> torch.Tensor:
        boxes, scores = decode(out, self.head)
        return torch.cat([boxes, scores], -1)


def grid_decoding(site: Site) -> Exported | None:
    """`detect`'s exported graph: the grid decoded to every proposed box, kind `boxes`."""
    head = head_of(site.params, site.shape, site.rf, site.image)
    if head is None:
        return None
    return Exported(GridDecoding(head), "boxes", (head.per_image, 4 + head.classes))
