"""`boxes`: a detection head (`detect ...`) with `loss yolo`, against padded boxes
``N x K x 5`` (class, x1, y1, x2, y2 in input pixels; class -1 pads): YOLO v1's sum-squared
loss per image (netspec.tasks.yolo), no accuracy. Each epoch measures the detector's mAP on
the test scenes instead, and the scenes' boxes move with them when they are augmented.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from netspec.artifact import OutputInfo
from netspec.compiler import Compiled
from netspec.errors import DataError
from netspec.kinds import detection_head
from netspec.tasks.base import Deform, Fitted, Given, Log, Outputs, Target, Task, Tested, Trained
from netspec.tasks.yolo import yolo_loss
from netspec.trainspec import Augment, Loss

EDGE = 1e-3  # pixels a box may pass the image's edge by (float rounding), then cut to it
BOX_AUGMENTS = ("scale", "shift")  # what moves a box to a box; rotation and shear do not


@dataclass(frozen=True)
class SceneBoxes(Task):
    """What every detector trained on the scenes' boxes shares: only the augments that move
    a box to a box, applied to the boxes too; the head's raw output as its prediction (the
    exported graph or netspec.train.yolo turns it into boxes)."""

    def check_augment(self, spec: Augment, target: Target) -> None:
        check_box_augments(spec)

    def augment(
        self, x: torch.Tensor, y: torch.Tensor, deform: Deform, target: Target
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return deform.boxes(x, y)

    def predict(self, outs: Outputs, loss: Loss, target: Target) -> torch.Tensor:
        return outs[0]


def fitted(
    given: Given,
    target: Target,
    boxes: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]],
    device: torch.device,
) -> Fitted:
    """The training (the first ``given.kept``) and test scenes' padded boxes on ``device``."""
    train, test = boxes
    return Fitted(
        target,
        torch.as_tensor(train[: given.kept], device=device),
        torch.as_tensor(test, device=device),
        given.labels,
    )


@dataclass(frozen=True)
class Boxes(SceneBoxes):
    """A single-shot detector's grid against the scenes' boxes."""

    def target(
        self, compiled: Compiled, outputs: tuple[OutputInfo, ...], loss: Loss
    ) -> Target | None:
        """A detection head trains with `loss yolo`, and `loss yolo` trains only a head."""
        (output,) = outputs
        if output.kind != "boxes" and loss.name != "yolo":
            return None
        head = detection_head(compiled)
        if head is None or output.kind != "boxes":
            raise DataError(
                "loss yolo trains a detection head; end the network with one, e.g. "
                "conv 20 1x1 | detect boxes=2 classes=10"
            )
        if loss.name != "yolo":
            raise DataError(
                f"the output is a detection head ({head.grid}x{head.grid} cells); it trains "
                f"with loss yolo, not loss {loss.name}"
            )
        return Target(self, (head.boxes * 5 + head.classes, head.grid, head.grid), head=head)

    def fit(
        self,
        given: Given,
        target: Target,
        images: tuple[torch.Tensor, torch.Tensor],
        device: torch.device,
        log: Log,
    ) -> Fitted:
        train, test = box_targets(
            given.train_y, given.test_y, given.read, given.size, target, given.source
        )
        return fitted(given, target, (train, test), device)

    def loss_sum(self, outs: Outputs, y: torch.Tensor, loss: Loss, target: Target) -> torch.Tensor:
        assert target.head is not None
        out = outs[0] if outs[0].dtype == torch.float32 else outs[0].float()
        return yolo_loss(out, y, target.head, *loss.yolo_weights)

    def scores(self, loss: float, acc: float) -> str:
        return f"loss {loss:.4g} per scene"

    def note(self, test: Tested, row: Mapping[str, float]) -> str:
        """` | mAP@0.5 0.912, mAP@0.5:0.95 0.601`."""
        return f" | mAP@0.5 {row['test_map50']:.3f}, mAP@0.5:0.95 {row['test_map']:.3f}"

    def tested(self, test: Tested, n: int) -> str:
        return f"loss {test.loss:.4g} per scene on {n} scenes"

    def measure(self, trained: Trained) -> dict[str, float]:
        """The test scenes' ``test_map50`` and ``test_map`` (mAP@0.5:0.95)."""
        metrics = trained.detection_metrics()
        return {"test_map50": metrics.map50, "test_map": metrics.map}

    def draw(self, trained: Trained) -> list[Path]:
        return trained.detections()


BOXES = Boxes("boxes", exports_labels=True, rank=10)


def box_targets(
    train: npt.NDArray[Any] | None,
    test: npt.NDArray[Any] | None,
    src: tuple[int, ...],
    size: tuple[int, int],
    target: Target,
    source: str,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Both splits' padded boxes for the `detect` head (`scene_boxes`, its classes)."""
    assert target.head is not None
    return scene_boxes(train, test, src, size, target.head.classes, source)


def scene_boxes(
    train: npt.NDArray[Any] | None,
    test: npt.NDArray[Any] | None,
    src: tuple[int, ...],
    size: tuple[int, int],
    classes: int,
    source: str,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Both splits' padded boxes ``(N, K, 5)``, checked against the images and a detector
    of ``classes`` classes: the scenes must have the input's size (padding or resizing would
    move their boxes), every box lies inside its image and every class is one the head
    predicts."""
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
        bad_class = real & ((cls >= classes) | (cls != np.round(cls)))
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
                    f"the head predicts classes 0..{classes - 1} in "
                    f"{size[1]}x{size[0]} pixels)"
                )
        limit = np.array([size[1], size[0], size[1], size[0]], np.float32)
        y[..., 1:] = np.where(real[..., None], np.clip(box, 0, limit), box)
        out.append(y)
    return out[0], out[1]


def check_box_augments(spec: Augment) -> None:
    """A detector's augment block may scale and shift (the boxes move with the scene);
    rotation, shear and elastic deformation would turn its boxes into other shapes, and
    the others are not applied to scenes."""
    others = [w for w in spec.words if w not in BOX_AUGMENTS]
    if others:
        names = ", ".join(others)
        raise DataError(
            f"a detector's augment block takes {' and '.join(BOX_AUGMENTS)}, which move its "
            f"boxes with the scene; not {names}"
        )


RECORDS = (BOXES,)  # what netspec.tasks finds here
