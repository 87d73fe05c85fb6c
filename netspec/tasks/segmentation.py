"""`segmentation`: a map output ``K x H x W`` with `loss cross_entropy`, against per-pixel
classes ``N x H x W``: cross entropy averaged over positions, and pixel accuracy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.tasks.base import Deform, Fitted, Given, Log, Outputs, Target, Task, Tested, Trained
from netspec.tasks.map import (
    check_not_empty,
    check_shape,
    map_target,
    no_targets,
    refuse_deforming,
    targets,
)
from netspec.text import fmt_shape
from netspec.trainspec import Augment, Loss


@dataclass(frozen=True)
class Segmentation(Task):
    """Per-pixel class scores against per-pixel classes."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        return map_target(self, outputs, loss, "cross_entropy")

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        """Integer classes ``N x H x W``, each one of the output's channels."""
        check_not_empty(given)
        y, out = given.train_y, target.shape
        if y is None:
            raise no_targets(given, out, "classes N x H x W")
        want = tuple(out[1:])
        if not (y.dtype.kind in "iu" and y.ndim == 3):
            raise DataError(
                f"{given.source}: loss cross_entropy on a map needs integer per-pixel classes "
                f"y of shape N x {fmt_shape(want)}; found {y.dtype} {tuple(y.shape)}"
            )
        check_shape(given, y, out, want)
        _check_pixel_classes(given, int(out[0]))
        return targets(given, torch.int64, target, device)

    def check_augment(self, spec: Augment, target: Target) -> None:
        refuse_deforming(spec)

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return deform.images(x), y

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        """Per-pixel cross entropy, averaged over each map's positions, summed."""
        out = outs[0] if outs[0].dtype == torch.float32 else outs[0].float()
        per_pixel = F.cross_entropy(out, y, label_smoothing=loss.smoothing, reduction="none")
        return per_pixel.flatten(1).mean(1).sum()

    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        """The class per pixel."""
        return outs[0].argmax(1)

    def hits(self, pred: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
        """Each map's fraction of right pixels, summed."""
        return (pred == y).float().flatten(1).mean(1).sum()

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4f} pixel acc {acc:.2%}"

    def tested(self, test: Tested, n: int) -> str:
        return f"loss {test.loss:.4f} per pixel, pixel accuracy {test.acc:.2%} on {n} maps"

    def draw(self, trained: Trained) -> list[Path]:
        return trained.maps()


SEGMENTATION = Segmentation("segmentation", metric="pixel_acc", rank=40)


def _check_pixel_classes(given: Given, classes: int) -> None:
    for y in (given.train_y, given.test_y):
        if y is not None and y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise DataError(
                f"{given.source}: per-pixel classes from {int(y.min())} to {int(y.max())}, but "
                f"the output map has {classes} channels (classes 0 to {classes - 1})"
            )


RECORDS = (SEGMENTATION,)  # what netspec.tasks finds here
