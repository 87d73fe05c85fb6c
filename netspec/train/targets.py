"""What a network is trained to output, from its one output's kind and the train section's
loss, and the per-sample loss and hits of each task.

- `classes`: a class-scores output (`dense 10`, `rbf 10`) and integer labels: the loss the
  section names (cross_entropy, rbf, mse against one-hot targets), accuracy per sample;
- `map`: a map output `C x H x W` with `loss mse`, against maps of that shape (an `.npz`
  whose `y` is `N x C x H x W`), or against the input itself when the data has no maps and
  the output has the input's shape (an autoencoder): the mean squared error per pixel, no
  accuracy;
- `segmentation`: a map output `K x H x W` with `loss cross_entropy`, against per-pixel
  classes `N x H x W`: cross entropy averaged over positions, and pixel accuracy.
- `boxes`: a detection head (`detect ...`) with `loss yolo`, against padded boxes
  `N x K x 5` (netspec.train.yolo): YOLO v1's sum-squared loss per image, no accuracy (the
  run's mAP is measured on the test scenes instead).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F

from netspec.compiler import Compiled
from netspec.data import DataError
from netspec.ir import Shape
from netspec.kinds import detection_head, output_infos
from netspec.ops.detection import Head
from netspec.text import fmt_shape
from netspec.train.yolo import yolo_loss
from netspec.trainspec import Loss

Task = Literal["classes", "map", "segmentation", "boxes"]
RBF_J = 1.0  # LeNet-5's constant j: keeps the penalty of a distance from vanishing


@dataclass(frozen=True)
class Target:
    """The task, the output's per-sample shape, and whether the input is its own target."""

    task: Task = "classes"
    shape: Shape = ()
    reconstruct: bool = False
    head: Head | None = None  # a detection head's grid, boxes and classes (task boxes)

    @property
    def accuracy(self) -> str | None:
        """The metric's column suffix (`acc`, `pixel_acc`), or None for a map (loss only)."""
        return {"classes": "acc", "segmentation": "pixel_acc"}.get(self.task)

    @property
    def classes(self) -> int | None:
        """The number of classes: the scores' width, or a segmentation map's channels."""
        width = self.shape[0] if self.shape else None
        if self.task in ("map", "boxes") or not isinstance(width, int):
            return None
        return width if self.task == "segmentation" or len(self.shape) == 1 else None


CLASSES = Target()  # a classifier: what every run trained as before maps


def target_of(compiled: Compiled, loss: Loss) -> Target:
    """What the network's one output is trained as, or a DataError saying why it cannot be."""
    graph = compiled.graph
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise DataError(
            f"network '{graph.name}' has {len(graph.inputs)} input(s) and {len(graph.outputs)} "
            "output(s); training needs one of each"
        )
    output = output_infos(compiled)[0]
    shape = output.shape or ()
    if output.kind == "boxes" or loss.name == "yolo":
        return _boxes_target(compiled, output.kind, loss)
    if output.scores:
        flat = (shape[0],) if len(shape) == 3 else shape  # F x 1 x 1 scores are F scores
        return Target("classes", flat)
    if output.kind != "map":
        raise DataError(
            f"the output '{output.name}' is {'an' if output.kind[0] in 'ae' else 'a'} "
            f"{output.kind} ({fmt_shape(shape)}); netspec trains one output of class scores "
            "or one map"
        )
    if any(not isinstance(d, int) for d in shape):
        raise DataError(
            f"the output map is {fmt_shape(shape)}; training a map needs its sizes bound",
            hint="give the input's sizes with --set, e.g. --set H=28 --set W=28",
        )
    if loss.name == "mse":
        return Target("map", shape)
    if loss.name == "cross_entropy":
        return Target("segmentation", shape)
    raise DataError(
        f"loss {loss.name} is for class scores; a map output trains with loss mse "
        "(against maps) or loss cross_entropy (per-pixel classes)"
    )


def _boxes_target(compiled: Compiled, kind: str, loss: Loss) -> Target:
    """A detection head trains with `loss yolo`, and `loss yolo` trains only a head."""
    head = detection_head(compiled)
    if head is None or kind != "boxes":
        raise DataError(
            "loss yolo trains a detection head; end the network with one, e.g. "
            "conv 20 1x1 | detect boxes=2 classes=10"
        )
    if loss.name != "yolo":
        raise DataError(
            f"the output is a detection head ({head.grid}x{head.grid} cells); it trains with "
            f"loss yolo, not loss {loss.name}"
        )
    return Target("boxes", (head.boxes * 5 + head.classes, head.grid, head.grid), head=head)


def loss_sum(out: torch.Tensor, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
    """The summed per-sample loss of a batch.

    ``rbf`` is LeNet-5's criterion: the outputs are squared distances to class
    prototypes, and the loss is ``y_correct + log(exp(-j) + sum_i exp(-y_i))`` with j = 1,
    which pulls the right prototype close and pushes the others away. ``mse`` compares
    class scores with one-hot targets (smoothed like cross-entropy's), and a map with its
    target map, averaged over its values; per-pixel cross entropy is averaged over positions.
    """
    out = out if out.dtype == torch.float32 else out.float()  # (a call less a step)
    if target.task == "boxes":
        assert target.head is not None
        return yolo_loss(out, y, target.head, *loss.yolo_weights)
    if target.task == "map":
        return F.mse_loss(out, y.float(), reduction="none").flatten(1).mean(1).sum()
    if target.task == "segmentation":
        per_pixel = F.cross_entropy(out, y, label_smoothing=loss.smoothing, reduction="none")
        return per_pixel.flatten(1).mean(1).sum()
    out = out if out.dim() == 2 else out.flatten(1)
    if loss.name == "cross_entropy":
        return F.cross_entropy(out, y, label_smoothing=loss.smoothing, reduction="sum")
    if loss.name == "rbf":
        j = torch.full_like(out[:, :1], -RBF_J)
        correct = out.gather(1, y[:, None]).squeeze(1)
        return (correct + torch.logsumexp(torch.cat([j, -out], 1), 1)).sum()
    classes = out.shape[1]
    onehot = F.one_hot(y, classes).float() * (1 - loss.smoothing) + loss.smoothing / classes
    return F.mse_loss(out, onehot, reduction="none").mean(1).sum()


def predict(out: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
    """The predicted class per sample (nearest prototype for ``rbf`` distances, else the top
    score), or per pixel for segmentation; a map (or a detection head's grid) predicts itself."""
    if target.task in ("map", "boxes"):
        return out
    if target.task == "segmentation":
        return out.argmax(1)
    flat = out if out.dim() == 2 else out.flatten(1)
    return flat.argmin(1) if loss.name == "rbf" else flat.argmax(1)


def hits(pred: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
    """The batch's summed per-sample accuracy: right or wrong, or a fraction of pixels."""
    if target.task in ("map", "boxes"):
        return torch.zeros((), device=pred.device)
    if target.task == "segmentation":
        return (pred == y).float().flatten(1).mean(1).sum()
    return (pred == y).sum()
