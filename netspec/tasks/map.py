"""`map`: a map output ``C x H x W`` with `loss mse`, against maps of that shape (an `.npz`
whose `y` is ``N x C x H x W``), or against the input itself when the data has no maps and
the output has the input's shape (an autoencoder): the mean squared error per value, no
accuracy.

The checks every map output needs (sizes bound, a split not empty, targets of the output's
shape) are here too, for the other tasks that train a map (netspec.tasks.segmentation).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.ir import Shape
from netspec.tasks.base import Deform, Fitted, Given, Log, Outputs, Target, Task, Tested, Trained
from netspec.text import fmt_shape
from netspec.trainspec import Augment, Loss


@dataclass(frozen=True)
class Map(Task):
    """A map regressed on target maps, or on the input (reconstruct)."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        return map_target(self, outputs, loss, "mse")

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        """Float maps of the output's shape; or, when the data has none (or only labels) and
        the output has the input's shape, the inputs themselves."""
        check_not_empty(given)
        y, out = given.train_y, target.shape
        if y is None or y.ndim == 1:
            fitted = (given.channels, *given.size)
            if tuple(out) == fitted:
                had = "" if y is None else " (its labels are not used)"
                log(f"the output is a {fmt_shape(out)} map, as the input: reconstructing it{had}")
                return Fitted(replace(target, reconstruct=True), images[0], images[1])
            raise no_targets(
                given,
                out,
                "maps N x " + fmt_shape(out),
                f" (or an output of the input's shape {fmt_shape(fitted)}, to reconstruct it)",
            )
        if y.dtype.kind in "iu":
            raise DataError(
                f"{given.source}: loss mse on a map needs float maps y of shape "
                f"N x {fmt_shape(out)}; found integer {tuple(y.shape)} (per-pixel classes train "
                "with loss cross_entropy)"
            )
        check_shape(given, y, out, tuple(out))
        return targets(given, torch.float32, target, device)

    def check_augment(self, spec: Augment, target: Target) -> None:
        """A reconstruction is deformed with its input; target maps cannot be."""
        if not target.reconstruct:
            refuse_deforming(spec)

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = deform.images(x)
        return x, x if target.reconstruct else y  # a reconstruction: the deformed input

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        """The mean squared error of each map against its target map, summed."""
        out = outs[0] if outs[0].dtype == torch.float32 else outs[0].float()
        return F.mse_loss(out, y.float(), reduction="none").flatten(1).mean(1).sum()

    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        return outs[0]

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4g} (mse per value)"

    def tested(self, test: Tested, n: int) -> str:
        return f"loss {test.loss:.4g} (mse per value) on {n} maps"

    def draw(self, trained: Trained) -> list[Path]:
        return trained.maps()


MAP = Map("map", rank=30)


def map_target(
    task: Task, outputs: tuple[OutputInfo, ...], loss: Loss, trains_with: str
) -> Target | None:
    """``task``'s target for one map output trained with the loss ``trains_with``; None for
    any other output or loss (the map tasks differ only in their loss)."""
    (output,) = outputs
    if output.kind != "map":
        return None
    shape = bound_map(output)
    return Target(task, shape) if loss.name == trains_with else None


def bound_map(output: OutputInfo) -> Shape:
    """A map output's shape, whose sizes must be numbers to train it."""
    shape = output.shape or ()
    if any(not isinstance(d, int) for d in shape):
        raise DataError(
            f"the output map is {fmt_shape(shape)}; training a map needs its sizes bound",
            hint="give the input's sizes with --set, e.g. --set H=28 --set W=28",
        )
    return shape


def check_not_empty(given: Given) -> None:
    if not all(given.counts):
        raise DataError(f"{given.source}: an empty training or test set")


def no_targets(given: Given, out: Shape, holds: str, other: str = "") -> DataError:
    """The data has no targets for a map output: what its y should hold (and ``other``
    ways out)."""
    return DataError(
        f"{given.source} has no targets of the output's shape {fmt_shape(out)}; "
        f"expected an .npz whose y holds {holds}{other}"
    )


def check_shape(given: Given, y: npt.NDArray[Any], out: Shape, want: Shape) -> None:
    """Per-sample targets of the shape ``want`` that the output ``out`` is trained against."""
    if tuple(y.shape[1:]) != want:
        raise DataError(
            f"{given.source}: the targets are {fmt_shape(tuple(y.shape[1:]))} per sample, but "
            f"the network outputs {fmt_shape(out)}; they must match"
        )


def targets(given: Given, dtype: torch.dtype, target: Target, device: torch.device) -> Fitted:
    """Both splits' target maps as ``dtype`` on the device (the training split as kept)."""
    assert given.train_y is not None and given.test_y is not None
    return Fitted(
        target,
        _tensor(given.train_y[: given.kept], dtype, device),
        _tensor(given.test_y, dtype, device),
    )


def _tensor(y: npt.NDArray[Any], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.as_tensor(np.ascontiguousarray(y)).to(device=device, dtype=dtype)


def refuse_deforming(spec: Augment) -> None:
    """Refuse an augment block for targets that do not move with their inputs."""
    if spec.enabled:
        raise DataError(
            "augmentation deforms the inputs but not their target maps; train this map "
            "output without an augment block"
        )


RECORDS = (MAP,)  # what netspec.tasks finds here
