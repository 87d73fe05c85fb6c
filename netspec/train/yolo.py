"""YOLO v1 (Redmon, Divvala, Girshick & Farhadi 2016) in torch: boxes to a grid, a grid to
boxes, and the paper's sum-squared loss.

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
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import torch

from netspec.lower.detection import cells, corners, decode
from netspec.ops.detection import Head

EDGE = 1e-3  # pixels a box may pass the image's edge by (float rounding), then cut to it

if TYPE_CHECKING:
    from netspec.train.targets import Target
    from netspec.trainspec import Augment


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


@dataclass(frozen=True)
class Detections:
    """One image's detections after thresholds and class-wise suppression."""

    boxes: torch.Tensor  # (M, 4) x1, y1, x2, y2 in input pixels
    scores: torch.Tensor  # (M,)
    classes: torch.Tensor  # (M,) int64


def detect(
    out: torch.Tensor, head: Head, score: float | None = None, overlap: float | None = None
) -> list[Detections]:
    """Each image's boxes from raw maps: every (box, class) whose class-specific confidence
    reaches ``score`` (the head's threshold unless given), then non-maximum suppression per
    class at IoU ``overlap`` (the head's unless given), best first."""
    from kornia.geometry.bbox import nms

    keep_score = head.score if score is None else score
    keep_iou = head.iou if overlap is None else overlap
    boxes, scores = decode(out, head)
    found = []
    for b, s in zip(boxes, scores, strict=True):
        idx, cls = torch.nonzero(s >= keep_score, as_tuple=True)
        kept_boxes, kept_scores = b[idx], s[idx, cls]
        # one suppression over all classes at once: each class's boxes moved apart
        shifted = kept_boxes + cls[:, None].to(b.dtype) * (2 * max(head.image) + 1)
        order = nms(shifted, kept_scores, keep_iou) if len(idx) else idx
        found.append(Detections(kept_boxes[order], kept_scores[order], cls[order]))
    return found


def box_tensor(rows: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Per-image boxes ``(k_i, 5)`` (class, x1, y1, x2, y2) as one padded ``(N, K, 5)``
    tensor, K the most boxes of any image, empty rows class -1."""
    k = max((len(r) for r in rows), default=0)
    out = torch.full((len(rows), max(k, 1), 5), -1.0, dtype=torch.float32)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out.to(device)


def box_targets(
    train: npt.NDArray[Any] | None,
    test: npt.NDArray[Any] | None,
    src: tuple[int, ...],
    size: tuple[int, int],
    target: Target,
    source: str,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Both splits' padded boxes ``(N, K, 5)``, checked against the images and the head: the
    scenes must have the input's size (padding or resizing would move their boxes), every
    box lies inside its image and every class is one the head predicts."""
    from netspec.data import DataError

    assert target.head is not None
    if train is None or test is None:
        raise DataError(f"{source}: a detector trains on scenes with boxes; these have none")
    if tuple(src) != tuple(size):
        raise DataError(
            f"{source}: scenes of {src[0]}x{src[1]} for a detector whose input is "
            f"{size[0]}x{size[1]}; make scenes of the input's size"
        )
    out = []
    for split, y in (("train", train), ("test", test)):
        if y.ndim != 3 or y.shape[2] != 5:
            raise DataError(f"{source}: {split} boxes must be N x K x 5 (class x1 y1 x2 y2)")
        y = y.astype(np.float32)
        real = y[..., 0] >= 0
        cls, box = y[..., 0], y[..., 1:]
        bad_class = real & ((cls >= target.head.classes) | (cls != np.round(cls)))
        edge = EDGE  # a box read back from a labels file may pass the edge by a rounding
        inside = (box[..., 0] >= -edge) & (box[..., 1] >= -edge)
        inside &= (box[..., 2] <= size[1] + edge) & (box[..., 3] <= size[0] + edge)
        inside &= (box[..., 2] > box[..., 0]) & (box[..., 3] > box[..., 1])
        for what, bad in (
            ("a class the head does not predict", bad_class),
            ("a box outside its image", real & ~inside),
        ):
            if bad.any():
                n, k = (int(v) for v in np.argwhere(bad)[0])
                raise DataError(
                    f"{source}: {split} scene {n}, box {k}: {what} "
                    f"(class {cls[n, k]:g}, box {', '.join(f'{v:g}' for v in box[n, k])}; "
                    f"the head predicts classes 0..{target.head.classes - 1} in "
                    f"{size[1]}x{size[0]} pixels)"
                )
        limit = np.array([size[1], size[0], size[1], size[0]], np.float32)
        y[..., 1:] = np.where(real[..., None], np.clip(box, 0, limit), box)
        out.append(y)
    return out[0], out[1]


def check_box_augments(spec: Augment) -> None:
    """A detector's augment block may scale and shift (the boxes move with the scene);
    rotation, shear and elastic deformation would turn its boxes into other shapes."""
    from netspec.data import DataError
    from netspec.train.augment import BOX_AUGMENTS

    others = [n for n in ("rotate", "shear", "elastic_alpha") if getattr(spec, n) is not None]
    if others:
        names = ", ".join(n.removesuffix("_alpha") for n in others)
        raise DataError(
            f"a detector's augment block takes {' and '.join(BOX_AUGMENTS)}, which move its "
            f"boxes with the scene; not {names}"
        )
