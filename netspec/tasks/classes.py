"""`classes`: an output of class scores (`dense 10`, `rbf 10`) against integer labels ``(N,)``,
with the loss the train section names (cross_entropy, rbf, mse against one-hot targets) and
accuracy per sample."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.tasks.base import (
    Deform,
    Fitted,
    Given,
    Log,
    Outputs,
    Target,
    Task,
    Tested,
    Trained,
)
from netspec.trainspec import Augment, Loss

RBF_J = 1.0  # LeNet-5's constant j: keeps the penalty of a distance from vanishing


@dataclass(frozen=True)
class Classes(Task):
    """Class scores against labels."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        (output,) = outputs
        if not output.scores:
            return None
        shape = output.shape or ()
        return Target(self, (shape[0],) if len(shape) == 3 else shape)  # F x 1 x 1: F scores

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        width = target.shape[0] if len(target.shape) == 1 else None
        classes = _check_labels(given, width if isinstance(width, int) else None)
        assert given.train_y is not None and given.test_y is not None
        return Fitted(
            target,
            torch.as_tensor(given.train_y[: given.kept], device=device),
            torch.as_tensor(given.test_y, device=device),
            _labels(given.labels, classes),
        )

    def check_augment(self, spec: Augment, target: Target) -> None:
        """Any deformation: a label stays what it is when its image moves."""

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return deform.images(x), y

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        """``rbf`` is LeNet-5's criterion: the outputs are squared distances to class
        prototypes, and the loss is ``y_correct + log(exp(-j) + sum_i exp(-y_i))`` with j = 1,
        which pulls the right prototype close and pushes the others away. ``mse`` compares
        the scores with one-hot targets (smoothed like cross-entropy's)."""
        out = outs[0] if outs[0].dtype == torch.float32 else outs[0].float()
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

    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        """The class per sample: the nearest prototype for ``rbf`` distances, else the top
        score."""
        flat = outs[0] if outs[0].dim() == 2 else outs[0].flatten(1)
        return flat.argmin(1) if loss.name == "rbf" else flat.argmax(1)

    def hits(self, pred: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
        return (pred == y).sum()

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4f} acc {acc:.2%}"

    def note(self, test: Tested, row: Mapping[str, float]) -> str:
        return f" ({test.errors} errors)"

    def tested(self, test: Tested, n: int) -> str:
        return f"accuracy {test.acc:.2%}, {test.errors} errors of {n}"

    def evaluated(self, test: Tested, n: int) -> str:
        return f"test loss {test.loss:.4f}, {self.tested(test, n)}"

    def draw(self, trained: Trained) -> list[Path]:
        return trained.confusion()


CLASSES = Classes(
    "classes", metric="acc", per_sample=True, exports_labels=True, run_out=False, rank=20
)
CLASSIFIER = Target(CLASSES)  # a classifier: what every run trained as before maps


def _labels(names: tuple[str, ...], classes: int) -> tuple[str, ...]:
    """The data's class names, padded with numbers up to the network's output width."""
    return names[:classes] + tuple(str(i) for i in range(len(names), classes))


def _check_labels(given: Given, classes: int | None) -> int:
    """The number of classes: the network's output width, which must cover every label."""
    train, test = given.train_y, given.test_y
    if train is None or test is None or train.ndim != 1:
        raise DataError(
            f"{given.source} has no class labels y (N,); the network's output is class scores"
        )
    top = max((int(y.max()) for y in (train, test) if y.size), default=-1)
    if min((int(y.min()) for y in (train, test) if y.size), default=0) < 0:
        raise DataError(f"{given.source}: negative labels; expected 0, 1, 2, ...")
    if not len(train) or not len(test):
        raise DataError(f"{given.source}: an empty training or test set")
    if classes is None:
        raise DataError("the network's output is not a vector of class scores (C,)")
    if top >= classes:
        raise DataError(
            f"{given.source} has labels up to {top}, but the network outputs {classes} "
            f"scores; make its last layer output {top + 1}"
        )
    return classes


RECORDS = (CLASSES,)  # what netspec.tasks finds here
