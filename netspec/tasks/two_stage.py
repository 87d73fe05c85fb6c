"""`two_stage`: the R-CNN family's head (`two_stage(rois, scores, boxes, objectness, deltas,
classes=10)`, netspec.ops.two_stage) with `loss faster_rcnn`, against padded boxes
``N x K x 5`` (class, x1, y1, x2, y2 in input pixels; class -1 pads), as the scenes give them.

Faster R-CNN's loss (Ren et al. 2015), both stages trained together on the proposals the
network makes in the same step, its sampling as the `train` section declares it:

- the RPN: every anchor labelled by its best IoU with a true box, positive from
  `rpn_positive` (and each true box's best anchors, whatever their IoU), negative below
  `rpn_negative`, the rest ignored; `rpn_batch` anchors of each image drawn at random, at
  most `rpn_fraction` positive. Binary cross entropy of the objectness over those drawn,
  plus smooth L1 (beta 1/9) between the positives' deltas and those that make their anchor
  the true box (netspec.lower.proposals decodes them), both over the count drawn;
- the detector: every region the proposal layer kept labelled by its best IoU, its true
  box's class from `positive`, the background below `negative`; `batch` of each image drawn,
  at most `fraction` positive. Cross entropy over the background and the C classes, plus
  smooth L1 between the positives' offsets and those that make their RoI the true box
  (over the variances 0.1 and 0.2, netspec.lower.two_stage decodes them), over the count.

With `truth` (the default), the batch's true boxes join the proposals while training, in
place of those ranked last (netspec.lower.proposals.TakesTruth), as in Fast and Faster
R-CNN. The four terms are summed per image. The RoIs carry no gradient (the proposal layer's boxes
are data to the detector); the detector's gradients reach the backbone through the RoI
pooling. The loss depends on the proposals, which improve as it trains, so the lowest loss
is no sign of the best weights: each scene's F1 of the boxes the file would show (IoU
0.5, the same class; metrics.csv's `acc`) picks them. `netspec eval --scenes` measures the
exported file's mAP.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.kinds import head_node, head_site
from netspec.lower.proposals import TakesTruth, anchors
from netspec.lower.two_stage import TwoStageDecoding, to_centres
from netspec.ops import REGISTRY
from netspec.ops.proposals import DELTAS, ProposalsPlaced
from netspec.ops.ssd import VARIANCES
from netspec.ops.two_stage import ROI_FIELDS, FasterRcnnLoss, TwoStage, two_stage_of
from netspec.tasks.base import (
    Fitted,
    Given,
    Log,
    Outputs,
    Target,
    Tested,
    Trained,
    as_outputs,
)
from netspec.tasks.boxes import SceneBoxes, fitted, scene_boxes
from netspec.trainspec import Loss

BETA = 1.0 / 9  # smooth L1's switch from square to line (torchvision's, for both stages)
SMALLEST = 1e-3  # a box side in pixels the log of an offset may take
LOSS = "faster_rcnn"
MATCH = 0.5  # the IoU from which a detection finds its true box (F1, as mAP@0.5)


@dataclass(frozen=True)
class TwoStageTarget(Target):
    """The target of a `two_stage` head: the head, and the RPN's anchors where it has one."""

    two_stage: TwoStage | None = None
    rpn: ProposalsPlaced | None = None


def two_stage_head(compiled: Compiled) -> tuple[TwoStage, ProposalsPlaced | None] | None:
    """The network's `two_stage` head and, where it is given the RPN's maps, the placed
    proposal layer that reads those maps and makes its RoIs (a DataError where it reads
    other maps)."""
    site, node = head_site(compiled), head_node(compiled)
    if site is None or node is None:
        return None
    head = two_stage_of(site.params, site.inputs, site.image)
    if head is None:
        return None
    if not head.anchors:
        return head, None
    rois, *maps = node.inputs[0], *node.inputs[3:]
    made = next((n for n in compiled.graph.nodes if n.name == rois), None)
    placed = compiled.inferred.layer(rois).placed if made is not None else None
    if made is None or not REGISTRY[made.op].makes_rois or list(made.inputs) != maps:
        raise DataError(
            f"two_stage's RoIs '{rois}' must be the proposals made from its objectness and "
            f"deltas ({', '.join(maps)}), which train the RPN; write rois = "
            f"proposals({', '.join(maps)}, ...)"
        )
    assert isinstance(placed, ProposalsPlaced)
    return head, placed


@dataclass(frozen=True)
class TwoStageTask(SceneBoxes):
    """A `two_stage` head's rows against the scenes' boxes."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        """A `two_stage` head trains with `loss faster_rcnn`, and that loss only such a head."""
        found = two_stage_head(compiled)
        if found is None and loss.name != LOSS:
            return None
        if found is None:
            raise DataError(
                f"loss {LOSS} trains a two_stage head; end the network with one, e.g. "
                "two_stage(rois, scores, boxes, objectness, deltas, classes=10)"
            )
        head, rpn = found
        if loss.name != LOSS:
            raise DataError(
                f"the output is a two_stage head ({head.regions} regions); it trains with "
                f"loss {LOSS}, not loss {loss.name}"
            )
        shape = (head.regions + head.anchors, head.fields)
        return TwoStageTarget(self, shape, two_stage=head, rpn=rpn)

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        head = _head(target).two_stage
        assert head is not None
        train, test = scene_boxes(
            given.train_y, given.test_y, given.read, given.size, head.classes, given.source
        )
        return fitted(given, target, (train, test), device)

    def forward(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, target: Target
    ) -> Outputs:
        """While training with `truth`, the RoI-making layers see the batch's true boxes."""
        makers = [m for m in module.modules() if isinstance(m, TakesTruth)]
        if not (module.training and makers and loss.params(FasterRcnnLoss).truth):
            return super().forward(module, x, y, loss, target)
        for maker in makers:
            maker.truth = y
        try:
            return as_outputs(module(x))
        finally:
            for maker in makers:
                maker.truth = None

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        t = _head(target)
        assert t.two_stage is not None
        out, sampling = outs[0].float(), loss.params(FasterRcnnLoss)
        k = t.two_stage.regions
        total = detector_loss(out[:, :k], y, t.two_stage.classes, sampling)
        if t.rpn is not None:
            p = t.rpn
            placed = anchors(p.params.anchor_sizes(), p.cells, p.start, p.jump).to(out.device)
            total = total + rpn_loss(out[:, k:, : 1 + DELTAS], y, placed, sampling)
        return total

    def hits(self, pred: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
        """The batch's summed F1 per scene of the boxes the exported graph would show."""
        head = _head(target).two_stage
        assert head is not None
        with torch.no_grad():
            rows = TwoStageDecoding(head).to(pred.device)(pred.float())
        return scene_f1(rows, y, head.score).sum()

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4g}, F1 {acc:.3f} per scene"

    def tested(self, test: Tested, n: int) -> str:
        return f"loss {test.loss:.4g}, F1 {test.acc:.3f} per scene on {n} scenes"

    def draw(self, trained: Trained) -> list[Path]:
        return []


def _head(target: Target) -> TwoStageTarget:
    assert isinstance(target, TwoStageTarget)
    return target


TWO_STAGE = TwoStageTask("two_stage", metric="acc", exports_labels=True, rank=10)


def scene_f1(rows: torch.Tensor, y: torch.Tensor, score: float) -> torch.Tensor:
    """Each scene's F1 ``(N,)`` of its detections ``(N, R, 6)`` (x1, y1, x2, y2, score,
    class; those of at least ``score`` shown) against its padded boxes ``(N, G, 5)``: a
    detection is right where it overlaps a true box of its class not yet taken by IoU 0.5
    or more (best first, as mAP@0.5 matches them); 1 for a scene with neither."""
    shown = (rows[..., 5] >= 0) & (rows[..., 4] >= score)
    real = y[..., 0] >= 0
    iou = overlaps(rows[..., :4], y[..., 1:].float())  # (N, R, G)
    same = rows[..., 5:6].long() == y[..., 0].long()[:, None, :]
    right = (iou >= MATCH) & same & shown[..., None] & real[:, None, :]
    free, found = real.clone(), torch.zeros_like(rows[:, 0, 0])
    everyone = torch.arange(len(rows), device=rows.device)
    for r in range(rows.shape[1]):  # the best detection first takes its best free box
        can = right[:, r] & free
        best = torch.where(can, iou[:, r], -1.0).argmax(1)
        hit = can.any(1)
        found += hit
        free[everyone, best] &= ~hit
    total = shown.sum(1) + real.sum(1)
    return torch.where(total > 0, 2 * found / total.clamp(min=1), torch.ones_like(found))


def overlaps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes ``(N, M, 4)`` with ``(N, G, 4)``: ``(N, M, G)`` (0 without area)."""
    top_left = torch.maximum(a[:, :, None, :2], b[:, None, :, :2])
    bottom_right = torch.minimum(a[:, :, None, 2:], b[:, None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, :, None] + area_b[:, None, :] - inter).clamp(min=1e-12)


@dataclass(frozen=True)
class Labels:
    """Each box's true box (an index into the image's G), and whether it is a positive or a
    negative; a box that is neither trains nothing."""

    truth: torch.Tensor  # (N, M) int64
    positive: torch.Tensor  # (N, M) bool
    negative: torch.Tensor  # (N, M) bool


def label(
    boxes: torch.Tensor,
    valid: torch.Tensor,
    y: torch.Tensor,
    thresholds: tuple[float, float],
    best_of_each: bool,
) -> Labels:
    """Boxes ``(N, M, 4)`` (those of ``valid``) labelled by their best IoU with the true boxes
    of ``y`` ``(N, G, 5)``: positive from ``thresholds[0]``, negative below ``thresholds[1]``;
    with ``best_of_each``, each true box's best boxes positive too (IoU above 0)."""
    high, low = thresholds
    real = y[..., 0] >= 0
    iou = overlaps(boxes, y[..., 1:].float())
    iou = torch.where(real[:, None, :], iou, torch.full_like(iou, -1.0))
    best, truth = iou.max(2)
    positive = (best >= high) & valid
    if best_of_each:
        top = iou.max(1, keepdim=True).values  # (N, 1, G): each true box's best IoU
        positive |= ((iou == top) & (top > 0)).any(2) & valid
    return Labels(truth, positive, (best < low) & valid & ~positive)


def _first(mask: torch.Tensor, keys: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Of each row's ``mask`` ``(N, M)``, the ``count`` ``(N, 1)`` of the lowest ``keys``."""
    order = torch.where(mask, keys, torch.full_like(keys, 2.0)).argsort(1)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(mask.shape[1], device=mask.device).expand_as(order)
    )
    return mask & (rank < count)


def sample(labels: Labels, batch: int, fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives, negatives) drawn at random per image: at most ``batch·fraction``
    positives, negatives filling the rest of ``batch``."""
    keys = torch.rand(labels.positive.shape, device=labels.positive.device)
    most = torch.full_like(labels.truth[:, :1], int(batch * fraction))
    positive = _first(labels.positive, keys, most)
    negative = _first(labels.negative, keys, batch - positive.sum(1, keepdim=True))
    return positive, negative


def encode(
    truth: torch.Tensor, boxes: torch.Tensor, variances: tuple[float, float]
) -> torch.Tensor:
    """The offsets ``(..., 4)`` that make boxes ``(..., 4)`` (cx, cy, w, h) these corner
    boxes: centre shifts in box sizes and log sizes, over the variances."""
    goal = to_centres(truth)
    size, own = goal[..., 2:].clamp(min=SMALLEST), boxes[..., 2:].clamp(min=SMALLEST)
    shift = (goal[..., :2] - boxes[..., :2]) / (variances[0] * own)
    return torch.cat([shift, torch.log(size / own) / variances[1]], -1)


def _box_loss(
    offsets: torch.Tensor,
    y: torch.Tensor,
    labels: Labels,
    boxes: torch.Tensor,
    v: tuple[float, float],
) -> torch.Tensor:
    """Smooth L1 of each box's offsets ``(N, M, 4)`` against its true box's, ``(N, M)``."""
    n, m = labels.truth.shape
    matched = y[..., 1:].float().gather(1, labels.truth[..., None].expand(n, m, 4))
    goal = encode(matched, boxes, v)
    return functional.smooth_l1_loss(offsets, goal, beta=BETA, reduction="none").sum(-1)


def rpn_loss(
    rows: torch.Tensor, y: torch.Tensor, placed: torch.Tensor, s: FasterRcnnLoss
) -> torch.Tensor:
    """The RPN's summed loss of anchor rows ``(N, L, 5)`` (logit, 4 deltas) against padded
    boxes ``(N, G, 5)``, for anchors ``(L, 4)`` (cx, cy, w, h in pixels)."""
    n = rows.shape[0]
    corners = torch.cat([placed[:, :2] - placed[:, 2:] / 2, placed[:, :2] + placed[:, 2:] / 2], 1)
    valid = torch.ones_like(rows[..., 0], dtype=torch.bool)
    labels = label(corners.expand(n, -1, 4), valid, y, (s.rpn_positive, s.rpn_negative), True)
    positive, negative = sample(labels, s.rpn_batch, s.rpn_fraction)
    count = (positive | negative).sum(1).clamp(min=1)
    bce = functional.binary_cross_entropy_with_logits(
        rows[..., 0], positive.float(), reduction="none"
    )
    objectness = (bce * (positive | negative)).sum(1)
    boxes = _box_loss(rows[..., 1:], y, labels, placed.expand(n, -1, 4), (1.0, 1.0))
    return ((objectness + (boxes * positive).sum(1)) / count).sum()


def detector_loss(
    rows: torch.Tensor, y: torch.Tensor, classes: int, s: FasterRcnnLoss
) -> torch.Tensor:
    """The detector's summed loss of region rows ``(N, K, F)`` (RoI, score, 1 + C logits,
    4 offsets) against padded boxes ``(N, G, 5)``."""
    rois, valid = rows[..., :DELTAS].detach(), rows[..., DELTAS].detach() >= 0
    labels = label(rois, valid, y, (s.positive, s.negative), False)
    positive, negative = sample(labels, s.batch, s.fraction)
    count = (positive | negative).sum(1).clamp(min=1)
    truth = y[..., 0].long().clamp(min=0).gather(1, labels.truth) + 1  # the background is 0
    wanted = torch.where(positive, truth, torch.zeros_like(truth))
    logits = rows[..., ROI_FIELDS : ROI_FIELDS + 1 + classes]
    ce = functional.cross_entropy(logits.transpose(1, 2), wanted, reduction="none")
    boxes = _box_loss(rows[..., -DELTAS:], y, labels, to_centres(rois), VARIANCES)
    return (((ce * (positive | negative)).sum(1) + (boxes * positive).sum(1)) / count).sum()


RECORDS = (TWO_STAGE,)  # what netspec.tasks finds here
