"""`single_shot`: a single-shot grid's boxes (YOLO v1), as netspec.export.detection writes
them: the `detect` operation's decoding (netspec.ops.detection).

The file's one output, kind `boxes`, is already decoded in the graph: a row per proposed box,
its corners in the input's pixels, then one class-specific confidence per class. What is
left is the image resized to the input, the threshold and NMS per class, and the boxes
scaled back to the image's own pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from netspec.artifact import MAX_ELEMENTS, MAX_ENTRIES, ModelInfo, record_schema
from netspec.detection.boxes import Detections, select
from netspec.errors import MetadataError, ModelError
from netspec.runtime.decoders.base import (
    Decoder,
    DetectOptions,
    FloatArray,
    Params,
    read_record,
    resize,
    run_image,
)
from netspec.text import fmt_shape

if TYPE_CHECKING:
    from netspec.runtime.session import Model

NAME = "single_shot"


@dataclass(frozen=True)
class SingleShot:
    """What a single-shot detector's `boxes` output holds: every one of the grid's `grid` x
    `grid` cells proposes `boxes` boxes, each its corners x1, y1, x2, y2 in the pixels of an
    input of `image` (H, W), then `classes` class-specific confidences; `netspec detect`
    keeps those of at least `score` and suppresses, per class, a box overlapping a better
    one by more than `iou`."""

    grid: int
    boxes: int
    classes: int
    image: tuple[int, int]
    score: float
    iou: float

    @property
    def rows(self) -> tuple[int, int]:
        """The per-sample shape of the output: a row (x1, y1, x2, y2, then one confidence per
        class) for each box of each cell."""
        return self.grid * self.grid * self.boxes, 4 + self.classes

    @classmethod
    def from_params(cls, params: Params, source: str) -> SingleShot:
        """The decoding's parameters checked field by field (MetadataError naming `source`)."""
        shot: SingleShot = read_record(_SCHEMA, params, NAME, source)
        return shot

    def problem(self, info: ModelInfo) -> str | None:
        """What is wrong with these parameters against the rest of the file: the image must
        be the input's own (H, W), which bounds what `netspec detect` resizes a picture to,
        and the grid's boxes must fit `MAX_ELEMENTS` values."""
        own = tuple(info.inputs[0].shape[-2:])
        if self.image != own:
            h, w = self.image
            return f"image {h}x{w} is not the input's size ({'x'.join(map(str, own))})"
        values = self.grid * self.grid * self.boxes * (4 + self.classes)
        if values > MAX_ELEMENTS:
            return (
                f"{self.grid}x{self.grid} cells of {self.boxes} boxes and {self.classes} "
                f"classes are {values:,} values; netspec reads at most {MAX_ELEMENTS:,}"
            )
        return None

    def not_the_grid(self, shape: tuple[int | str, ...]) -> str:
        """Why an output of `shape` is not these boxes."""
        return (
            f"its output is {fmt_shape(shape)}, but its single_shot grid ({self.grid}x"
            f"{self.grid} cells of {self.boxes} boxes, {self.classes} classes) gives "
            f"{fmt_shape(self.rows)}"
        )


_COUNT = cs.int_schema(strict=True, gt=0, le=MAX_ENTRIES)
_SIZE = cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)
_SHARE_OF_ONE = cs.float_schema(ge=0, le=1, allow_inf_nan=False)
_SCHEMA = SchemaValidator(
    record_schema(
        SingleShot,
        {
            "grid": _COUNT,
            "boxes": _COUNT,
            "classes": _COUNT,
            "image": cs.tuple_schema([_SIZE, _SIZE]),
            "score": _SHARE_OF_ONE,
            "iou": _SHARE_OF_ONE,
        },
    )
)


def read(params: Params, info: ModelInfo, source: str) -> SingleShot:
    """The file's grid and thresholds, checked against its input and its output's shape."""
    shot = SingleShot.from_params(params, source)
    problem = shot.problem(info)
    if problem is not None:
        raise MetadataError(f"{source}: bad netspec metadata: {NAME}: {problem}")
    shape = info.outputs[0].shape
    if shape is not None and tuple(shape) != shot.rows:
        raise ModelError(f"{source}: {shot.not_the_grid(shape)}")
    return shot


def decode(model: Model, shot: SingleShot, image: FloatArray, options: DetectOptions) -> Detections:
    """The image resized to the model's input, one pass, every proposed box whose
    class-specific confidence reaches the threshold (the file's `score`, or `--threshold`
    where given), NMS per class at the file's IoU (or `--iou`), the boxes scaled back to the
    image's own pixels."""
    height, width = image.shape[2:]
    rows = run_image(model, resize(image, *shot.image))
    if rows.shape[1:] != shot.rows:
        raise ModelError(f"{model.path}: {shot.not_the_grid(rows.shape[1:])}")
    out = rows[0]  # (S*S*B, 4 + C)
    threshold, overlap = options.chosen(shot.score, shot.iou)
    scale = np.array([width, height, width, height], np.float32) / np.array(
        [shot.image[1], shot.image[0]] * 2, np.float32
    )
    found = select(out[:, :4] * scale, out[:, 4:], threshold, overlap, options.max_detections)
    return found.clipped(height, width)


RECORDS = (
    Decoder(
        name=NAME,
        outputs=("boxes",),
        missing="boxes without their grid",
        read=read,
        decode=decode,
    ),
)
