"""`ssd`: an SSD head (`ssd(a, b, classes=10, scales=[...])`, netspec.ops.ssd) with `loss ssd`,
against padded boxes ``N x K x 5`` (class, x1, y1, x2, y2 in input pixels; class -1 pads), as
the scenes give them (netspec.tasks.boxes checks them the same way for both detectors).

The loss of SSD (Liu et al. 2016), over a batch, with N the default boxes matched:

- matching: every default box takes the true box it overlaps most, and is a match (a
  positive) where that IoU reaches `match` (0.5); every true box also takes the default
  box it overlaps most, whatever the IoU, so that none goes unlearned;
- L_loc: smooth L1 (beta 1) between a match's 4 offsets and the ones that make its default
  box the true box (centre offsets in default-box sizes over the variance 0.1, log sizes
  over 0.2; netspec.lower.ssd decodes them back);
- L_conf: cross entropy over the background and the C classes, for every match (its true
  class) and, per image, the `negatives` (3) times as many unmatched default boxes whose
  background the network is most wrong about (hard negative mining), the background theirs;
- L = (L_conf + alpha L_loc) / N.

No accuracy: the lowest test loss picks the best weights. The exported file decodes the
boxes and keeps the best of them (netspec.lower.ssd); `netspec eval --scenes` measures its
mAP through ONNX Runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.kinds import head_site
from netspec.lower.ssd import corners, priors
from netspec.ops.ssd import DELTAS, VARIANCES, Ssd, SsdLoss, ssd_of
from netspec.tasks.base import (
    Fitted,
    Given,
    Log,
    Outputs,
    Target,
    Tested,
    Trained,
)
from netspec.tasks.boxes import SceneBoxes, fitted, scene_boxes
from netspec.trainspec import Loss

MATCH, NEGATIVES, ALPHA = 0.5, 3.0, 1.0  # the paper's, where `loss ssd` does not say
SMALLEST = 1e-6  # a box side (a fraction of the input) the log of an offset may take


@dataclass(frozen=True)
class SsdTarget(Target):
    """The target of an SSD head: its rows ``(R, 5 + C)`` and the head they come from."""

    ssd: Ssd | None = None


def ssd_head(compiled: Compiled) -> Ssd | None:
    """The network's SSD head when its one output ends in one (None where a symbolic size
    leaves its default boxes unknown)."""
    site = head_site(compiled)
    return None if site is None else ssd_of(site.params, site.inputs, site.image)


def weights(loss: Loss) -> tuple[float, float, float]:
    """(match, negatives, alpha): the section's (`loss ssd`, netspec.ops.ssd's `SsdLoss`),
    else the paper's 0.5, 3 and 1."""
    given = loss.params(SsdLoss)
    match = MATCH if given.match is None else given.match
    negatives = NEGATIVES if given.negatives is None else given.negatives
    return match, negatives, ALPHA if given.alpha is None else given.alpha


@dataclass(frozen=True)
class SsdTask(SceneBoxes):
    """An SSD head's rows against the scenes' boxes."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        """An SSD head trains with `loss ssd`, and `loss ssd` trains only an SSD head."""
        head = ssd_head(compiled)
        if head is None and loss.name != "ssd":
            return None
        if head is None:
            raise DataError(
                "loss ssd trains an SSD head; end the network with one, e.g. "
                "ssd(a, b, classes=10, scales=[0.1, 0.2])"
            )
        if loss.name != "ssd":
            raise DataError(
                f"the output is an SSD head ({head.rows:,} default boxes); it trains with "
                f"loss ssd, not loss {loss.name}"
            )
        return SsdTarget(self, (head.rows, DELTAS + 1 + head.classes), ssd=head)

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        head = _ssd(target)
        train, test = scene_boxes(
            given.train_y, given.test_y, given.read, given.size, head.classes, given.source
        )
        return fitted(given, target, (train, test), device)

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        head = _ssd(target)
        default = priors(head, outs[0].device)
        return ssd_loss(outs[0].float(), y, head, default, *weights(loss))

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4g} per match"

    def tested(self, test: Tested, n: int) -> str:
        return f"loss {test.loss:.4g} per match on {n} scenes"

    def draw(self, trained: Trained) -> list[Path]:
        return []


def _ssd(target: Target) -> Ssd:
    assert isinstance(target, SsdTarget) and target.ssd is not None
    return target.ssd


SSD = SsdTask("ssd", exports_labels=True, rank=10)


def overlaps(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU of corner boxes ``(N, K, 4)`` with ``(R, 4)``: ``(N, K, R)`` (0 without area)."""
    top_left = torch.maximum(a[..., None, :2], b[:, :2])
    bottom_right = torch.minimum(a[..., None, 2:], b[:, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[..., None] + area_b - inter).clamp(min=1e-12)


@dataclass(frozen=True)
class Matches:
    """Each default box's true box (an index into the image's K) and whether it matches."""

    truth: torch.Tensor  # (N, R) int64
    positive: torch.Tensor  # (N, R) bool


def match(truth: torch.Tensor, real: torch.Tensor, default: torch.Tensor, at: float) -> Matches:
    """Default boxes ``(R, 4)`` (cx, cy, w, h) matched to true corner boxes ``(N, K, 4)``,
    ``real`` ``(N, K)`` saying which are boxes: each default box to the true box it overlaps
    most, a match from IoU ``at``; each true box's best default box a match whatever the
    IoU (the later true box's where two share one)."""
    iou = overlaps(truth, corners(default))  # (N, K, R)
    iou = torch.where(real[..., None], iou, torch.full_like(iou, -1.0))
    best, index = iou.max(1)  # (N, R)
    best_default = iou.argmax(2)  # (N, K)
    rows = torch.arange(len(truth), device=truth.device)
    for k in range(truth.shape[1]):
        n = rows[real[:, k]]
        best[n, best_default[n, k]] = 2.0  # above any IoU: always a match
        index[n, best_default[n, k]] = k
    return Matches(index, best >= at)


def encode(boxes: torch.Tensor, default: torch.Tensor) -> torch.Tensor:
    """The offsets ``(..., R, 4)`` that make default boxes ``(R, 4)`` (cx, cy, w, h) these
    corner boxes ``(..., R, 4)``: SSD's, over the variances (netspec.lower.ssd inverts it)."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    size = (boxes[..., 2:] - boxes[..., :2]).clamp(min=SMALLEST)
    shift = (centre - default[:, :2]) / (VARIANCES[0] * default[:, 2:])
    return torch.cat([shift, torch.log(size / default[:, 2:]) / VARIANCES[1]], -1)


def ssd_loss(
    out: torch.Tensor,
    y: torch.Tensor,
    head: Ssd,
    default: torch.Tensor,
    at: float = MATCH,
    negatives: float = NEGATIVES,
    alpha: float = ALPHA,
) -> torch.Tensor:
    """The batch's summed loss (the batch's size times L above) of rows ``(N, R, 5 + C)``
    against padded boxes ``(N, K, 5)`` in input pixels, for default boxes ``(R, 4)``."""
    n, r = out.shape[0], out.shape[1]
    h, w = head.image
    real = y[..., 0] >= 0
    truth = y[..., 1:].float() / torch.tensor([w, h, w, h], device=y.device, dtype=torch.float32)
    found = match(truth, real, default, at)
    pos = found.positive
    classes = y[..., 0].long().clamp(min=0).gather(1, found.truth) + 1  # the background is 0
    labels = torch.where(pos, classes, torch.zeros_like(classes))
    matched = truth.gather(1, found.truth[..., None].expand(n, r, 4))
    loc = functional.smooth_l1_loss(out[..., :DELTAS], encode(matched, default), reduction="none")
    loc_sum = (loc.sum(-1) * pos).sum()
    ce = functional.cross_entropy(
        out[..., DELTAS:].reshape(n * r, -1), labels.reshape(-1), reduction="none"
    ).view(n, r)
    hard = torch.where(pos, torch.full_like(ce, -1.0), ce.detach())  # a match is no negative
    count = pos.sum(1)
    kept = torch.minimum((count * negatives).floor(), r - count)  # per image
    first = torch.arange(r, device=out.device) < kept[:, None]  # (N, R), the hardest first
    negative = torch.zeros_like(pos).scatter(1, hard.argsort(1, descending=True), first)
    conf_sum = (ce * (pos | negative)).sum()
    return (conf_sum + alpha * loc_sum) / count.sum().clamp(min=1) * n


RECORDS = (SSD,)  # what netspec.tasks finds here
