"""`ssd`: the boxes an SSD head's exported graph has already chosen (netspec.ops.ssd,
netspec.lower.ssd): the `ssd` operation's decoding.

The file's one output, kind `detections` (declared here, by the decoder that reads it), is
``keep x 6`` rows per image: x1, y1, x2, y2 in the input's pixels, the class's score, and
the class, best first, after the graph's own threshold (`floor`), per-class suppression
(`iou`) and cut to `keep`; a row of class -1 holds no box. What is left is the image resized
to the input, the least score shown (the file's `score`, or `--threshold`: one below the
graph's `floor` cannot bring back what the graph dropped), a stricter suppression where
`--iou` asks for one, and the boxes scaled back to the image's own pixels. Rows the file's
metadata does not describe (another number of them, a class it does not have) are a
ModelError, never boxes: a file's metadata may have been edited apart from its graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from netspec.artifact import MAX_ELEMENTS, ModelInfo, record_schema
from netspec.detection.boxes import Detections, as_boxes
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

NAME = "ssd"
KIND = "detections"  # the output kind this decoder reads, and so declares
COLUMNS = 6  # x1, y1, x2, y2, score, class
MAX_KEEP = 1000  # rows an image's output may hold (netspec.ops.ssd.MAX_KEEP)


@dataclass(frozen=True)
class Chosen:
    """What an SSD file's `detections` output holds: `keep` rows per image, for an input of
    `image` (H, W) and `classes` classes, chosen in the graph from the scores of at least
    `floor` and suppressed per class above IoU `iou`; `netspec detect` shows the boxes of
    at least `score`."""

    classes: int
    keep: int
    image: tuple[int, int]
    score: float
    floor: float
    iou: float

    @classmethod
    def from_params(cls, params: Params, source: str) -> Chosen:
        """The decoding's parameters checked field by field (MetadataError naming `source`)."""
        chosen: Chosen = read_record(_SCHEMA, params, NAME, source)
        return chosen

    def not_the_rows(self, shape: tuple[int | str, ...], head: str = NAME) -> str:
        """Why an output of `shape` is not these rows (`head` names what keeps them)."""
        return f"its output is {fmt_shape(shape)}, but its {head} keeps {self.keep} rows of 6"


_SHARE_OF_ONE = cs.float_schema(ge=0, le=1, allow_inf_nan=False)
_SIZE = cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)
_SCHEMA = SchemaValidator(
    record_schema(
        Chosen,
        {
            "classes": cs.int_schema(strict=True, gt=0, le=MAX_KEEP * 100),
            "keep": cs.int_schema(strict=True, gt=0, le=MAX_KEEP),
            "image": cs.tuple_schema([_SIZE, _SIZE]),
            "score": _SHARE_OF_ONE,
            "floor": _SHARE_OF_ONE,
            "iou": _SHARE_OF_ONE,
        },
    )
)


def read(params: Params, info: ModelInfo, source: str) -> Chosen:
    """The file's rows and thresholds, checked against its input, its output's shape and
    its labels."""
    chosen = Chosen.from_params(params, source)
    own = tuple(info.inputs[0].shape[-2:])
    if chosen.image != own:
        h, w = chosen.image
        raise MetadataError(
            f"{source}: bad netspec metadata: {NAME}: image {h}x{w} is not the input's size "
            f"({'x'.join(map(str, own))})"
        )
    shape = info.outputs[0].shape
    if shape is not None and tuple(shape) != (chosen.keep, COLUMNS):
        raise ModelError(f"{source}: {chosen.not_the_rows(shape)}")
    if info.labels is not None and len(info.labels) != chosen.classes:
        raise ModelError(
            f"{source}: its ssd has {chosen.classes} classes but it has {len(info.labels)} labels"
        )
    return chosen


def decode(model: Model, chosen: Chosen, image: FloatArray, options: DetectOptions) -> Detections:
    """The image resized to the model's input, one pass, the rows holding a box of at least
    the threshold (the file's `score`, or `--threshold`), suppressed again where `--iou`
    is stricter than the file's, the boxes scaled back to the image's own pixels."""
    return decode_rows(model, chosen, image, options, NAME)


def decode_rows(
    model: Model, chosen: Chosen, image: FloatArray, options: DetectOptions, head: str
) -> Detections:
    """`decode` for any head whose file holds these rows, `head` naming it in errors: a
    ModelError where the graph's rows are not what the metadata says (another number of
    rows, a class it does not have)."""
    height, width = image.shape[2:]
    rows = run_image(model, resize(image, *chosen.image))
    if rows.shape[1:] != (chosen.keep, COLUMNS):
        raise ModelError(f"{model.path}: {chosen.not_the_rows(rows.shape[1:], head)}")
    out = rows[0]
    strange = (out[:, 5] != np.round(out[:, 5])) | (out[:, 5] < -1) | (out[:, 5] >= chosen.classes)
    if strange.any():
        raise ModelError(
            f"{model.path}: its output holds a row of class {out[strange][0, 5]:g}, but its "
            f"{head} has {chosen.classes} classes (0 to {chosen.classes - 1}; -1 for no box)"
        )
    threshold, overlap = options.chosen(chosen.score, chosen.iou)
    held = out[(out[:, 5] >= 0) & (out[:, 4] >= threshold)]
    scale = np.array([width, height, width, height], np.float32) / np.array(
        [chosen.image[1], chosen.image[0]] * 2, np.float32
    )
    found = Detections(
        as_boxes(held[:, :4] * scale),
        held[:, 4].astype(np.float32),
        np.round(held[:, 5]).astype(np.int64),
    )
    return found.suppressed(overlap, options.max_detections).clipped(height, width)


RECORDS = (
    Decoder(
        name=NAME,
        outputs=(KIND,),
        missing="detections without their ssd decoding",
        read=read,
        decode=decode,
    ),
)
