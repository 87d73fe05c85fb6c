"""The task record (`Task`), the `Target` a network is trained to, and the small types a
task's methods take: the data as read (`Given`), its targets as tensors (`Fitted`), and what
the train layer offers a task (`Deform`, `Tested`, `Trained`).

A task answers; the train layer asks. The train layer never names a task: it reads the
record's facts (`metric`, `per_sample`, ...) and calls its methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy.typing as npt
import torch
from torch import nn

from netspec.artifact import OutputInfo
from netspec.detection.coco import Metrics
from netspec.ir import Shape
from netspec.ops.detection import Head
from netspec.trainspec import Augment, Loss, TrainConfig

if TYPE_CHECKING:
    from netspec.compiler import Compiled

Log = Callable[[str], None]
Outputs = tuple[torch.Tensor, ...]  # a network's outputs, in the order the spec gives them


def as_outputs(value: torch.Tensor | Outputs) -> Outputs:
    """A module's result as a tuple of outputs (netspec.lower returns one output bare)."""
    return value if isinstance(value, tuple) else (value,)


@dataclass(frozen=True)
class Target:
    """What a network is trained to output: its task, the output's per-sample shape, whether
    the input is its own target (an autoencoder), and a detection head's grid, boxes and
    classes (task boxes)."""

    task: Task
    shape: Shape = ()
    reconstruct: bool = False
    head: Head | None = None


@dataclass(frozen=True)
class Given:
    """What a dataset gave, for a task to check and fit: both splits' targets as read (None
    when it has none), the number of samples of each split, how many training samples are
    kept (--limit keeps the first), the source and its class names, and the images' size
    as read and as fitted to the input (channels, height, width)."""

    train_y: npt.NDArray[Any] | None
    test_y: npt.NDArray[Any] | None
    counts: tuple[int, int]  # (training, test) samples
    kept: int
    source: str
    labels: tuple[str, ...]
    read: tuple[int, ...]  # (H, W) of the images as read
    channels: int | str
    size: tuple[int, int]  # (H, W) of the input


@dataclass(frozen=True)
class Fitted:
    """Both splits' targets on the training device, the target as the data decided it (a map
    with no target maps reconstructs its input), and the class names the run keeps."""

    target: Target
    train_y: torch.Tensor
    test_y: torch.Tensor
    labels: tuple[str, ...] = ()


class Deform(Protocol):
    """An epoch's random deformations (netspec.train.augment), as a task applies them."""

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Deformed images ``(B, C, H, W)``; ``x`` itself when nothing is enabled."""
        ...

    def boxes(self, x: torch.Tensor, boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Scenes scaled and shifted, with their padded boxes ``(B, K, 5)`` moved along."""
        ...


class Tested(Protocol):
    """A test set's loss, accuracy and error count (netspec.train.loop.Evaluation)."""

    @property
    def loss(self) -> float: ...

    @property
    def acc(self) -> float: ...

    @property
    def errors(self) -> int: ...


class Trained(Protocol):
    """A trained network and its test set, as the train layer measures and draws them
    (netspec.train.session); each method returns the pictures it wrote."""

    def confusion(self) -> list[Path]:
        """The confusion matrix and the misclassified images of per-sample classes."""
        ...

    def maps(self) -> list[Path]:
        """The first test inputs beside their target and predicted maps."""
        ...

    def detections(self) -> list[Path]:
        """Precision against recall per class, and test scenes with their boxes."""
        ...

    def detection_metrics(self) -> Metrics:
        """COCO's metrics of a detector on the test scenes."""
        ...


@dataclass(frozen=True)
class Task(ABC):
    """One task: what it trains and how a run reports it (netspec.tasks lists the fields).
    Its module makes one instance, e.g. ``CLASSES = Classes("classes", metric="acc", ...)``.

    ``per_sample``: y is one class per sample, so predictions are kept (the confusion matrix,
    the error count), hits are counted over several steps' outputs at once (they are
    small), and the first test labels go with the sample images and the export's check.
    """

    name: str  # for people and files; never compared
    metric: str | None = None  # metrics.csv's accuracy column (acc, pixel_acc); None: loss only
    per_sample: bool = False  # y is one class per sample (above)
    exports_labels: bool = False  # the data's class names go into model.onnx
    run_out: bool = True  # `netspec run` writes its outputs to files (next steps say --out)
    outputs: int = 1  # how many network outputs it trains
    rank: int = 100  # where `target_of` asks it: lower first (a detector before a classifier)
    trains_itself: bool = False  # fits its module in one pass (`fit_module`), not by gradients

    @abstractmethod
    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        """The target when this task trains these outputs with ``loss``; None when they are
        not this task's; a DataError when they are, but cannot be trained as given."""

    @abstractmethod
    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        """The data's targets, checked against the target and made tensors; ``images`` are
        both splits' inputs as fitted (a reconstruction's targets)."""

    @abstractmethod
    def check_augment(self, spec: Augment, target: Target) -> None:
        """Refuse (DataError) an augment block that would not move the targets with the
        images."""

    @abstractmethod
    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A training batch deformed, its targets moved with it where they move."""

    def forward(
        self, module: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Loss, target: Target
    ) -> Outputs:
        """A training step's outputs of the module for inputs ``x`` whose targets are ``y``
        (a task whose network sees the targets while it trains overrides this)."""
        return as_outputs(module(x))

    @abstractmethod
    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        """The batch's summed per-sample loss."""

    @abstractmethod
    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        """What the network predicts per sample."""

    def hits(self, pred: torch.Tensor, y: torch.Tensor, target: Target) -> torch.Tensor:
        """The batch's summed per-sample accuracy (zero for a task without a metric)."""
        return torch.zeros((), device=pred.device)

    def best(self, test: Tested) -> float:
        """What the best weights are chosen by: the accuracy, or the lowest loss."""
        return test.acc if self.metric else -test.loss

    def fit_module(
        self,
        module: nn.Module,
        train: tuple[torch.Tensor, torch.Tensor],
        test: tuple[torch.Tensor, torch.Tensor],
        target: Target,
        config: TrainConfig,
        log: Log,
    ) -> dict[str, float]:
        """Set the module's weights from the training (x, y) in one pass, for a task that
        `trains_itself` (a boosted cascade); what it measured, as metrics.csv's columns."""
        raise NotImplementedError(f"task {self.name} trains by gradient steps")

    @abstractmethod
    def scores(self, loss: float, acc: float) -> str:
        """A split's loss (and accuracy) on the epoch's line."""

    def note(self, test: Tested, row: Mapping[str, float]) -> str:
        """What the epoch's line adds after the test scores (``row``: its metrics)."""
        return ""

    @abstractmethod
    def tested(self, test: Tested, n: int) -> str:
        """The test set's result, in words, after training (``n`` test samples)."""

    def evaluated(self, test: Tested, n: int) -> str:
        """The test set's result as `netspec eval` prints it."""
        return "test " + self.tested(test, n)

    def measure(self, trained: Trained) -> dict[str, float]:
        """The epoch's metrics beyond loss and accuracy (metrics.csv columns)."""
        return {}

    @abstractmethod
    def draw(self, trained: Trained) -> list[Path]:
        """The pictures of the finished run that show this task."""
