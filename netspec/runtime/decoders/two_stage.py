"""`two_stage`: the boxes an R-CNN family head's exported graph has already chosen
(netspec.ops.two_stage, netspec.lower.two_stage): the `two_stage` operation's decoding.

The file's one output, kind `detections`, is ``keep x 6`` rows per image, as an SSD file's
(netspec.runtime.decoders.ssd): x1, y1, x2, y2 in the input's pixels, the class's score and
the class, best first, after the graph's proposals, RoI pooling, box refinement, threshold
(`floor`), per-class suppression (`iou`) and cut to `keep`; a row of class -1 holds no box.
What is left is the same as SSD's: the image resized to the input, the least score shown
(the file's `score`, or `--threshold`), a stricter suppression where `--iou` asks for one,
and the boxes scaled back to the image's own pixels. The parameters are checked here, under
this decoder's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from netspec.artifact import MAX_ELEMENTS, ModelInfo, record_schema
from netspec.detection.boxes import Detections
from netspec.errors import MetadataError, ModelError
from netspec.runtime.decoders import ssd
from netspec.runtime.decoders.base import (
    Decoder,
    DetectOptions,
    FloatArray,
    Params,
    read_record,
)

if TYPE_CHECKING:
    from netspec.runtime.session import Model

NAME = "two_stage"
HEAD = "two_stage head"  # what keeps the rows, in errors
MAX_KEEP = 1000  # rows an image's output may hold (netspec.ops.two_stage.MAX_KEEP)

_SHARE_OF_ONE = cs.float_schema(ge=0, le=1, allow_inf_nan=False)
_SIZE = cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)
_SCHEMA = SchemaValidator(
    record_schema(
        ssd.Chosen,
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


def read(params: Params, info: ModelInfo, source: str) -> ssd.Chosen:
    """The file's rows and thresholds, checked against its input, its output's shape and
    its labels."""
    chosen: ssd.Chosen = read_record(_SCHEMA, params, NAME, source)
    own = tuple(info.inputs[0].shape[-2:])
    if chosen.image != own:
        h, w = chosen.image
        raise MetadataError(
            f"{source}: bad netspec metadata: {NAME}: image {h}x{w} is not the input's size "
            f"({'x'.join(map(str, own))})"
        )
    shape = info.outputs[0].shape
    if shape is not None and tuple(shape) != (chosen.keep, ssd.COLUMNS):
        raise ModelError(f"{source}: {chosen.not_the_rows(shape, HEAD)}")
    if info.labels is not None and len(info.labels) != chosen.classes:
        raise ModelError(
            f"{source}: its {HEAD} has {chosen.classes} classes but it has "
            f"{len(info.labels)} labels"
        )
    return chosen


def decode(
    model: Model, chosen: ssd.Chosen, image: FloatArray, options: DetectOptions
) -> Detections:
    """The rows of at least the threshold, scaled to the image, as an SSD file's."""
    return ssd.decode_rows(model, chosen, image, options, HEAD)


RECORDS = (
    Decoder(
        name=NAME,
        outputs=(ssd.KIND,),
        missing="detections without their decoding",
        read=read,
        decode=decode,
    ),
)
