"""What every decoder is and uses: the `Decoder` record, the options that choose boxes, and
the image plumbing (resizing, running the model on one image).

A decoder reads a detector file's `decoding` (netspec.artifact.Decoding): `read` checks its
parameters against the rest of the file and returns them typed (its own record, such as
`SingleShot`), and `decode` turns one model-ready image (1, C, H, W) into boxes in that
image's pixels (xyxy), best first, after class-wise non-maximum suppression, the background
class dropped. `Detector` is a decoder with the parameters it read from one file.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic_core import SchemaValidator, ValidationError

from netspec.artifact import DecodingParam, ModelInfo, OutputKind, first_error
from netspec.detection.boxes import Detections
from netspec.errors import InputError, MetadataError, UsageError
from netspec.text import first_line, fmt_shape

if TYPE_CHECKING:
    from netspec.runtime.session import Model

FloatArray = npt.NDArray[np.float32]
Params = Mapping[str, DecodingParam]
P = TypeVar("P")

# The pyramid: each scale resizes the image by that factor before the window slides over
# it, so a 28-pixel window finds objects of 28/s pixels: 14 to 56 here, in steps of sqrt 2.
SCALES = (0.5, 0.707, 1.0, 1.414, 2.0)
MAX_SCALE = 16.0


@dataclass(frozen=True)
class DetectOptions:
    """How boxes are chosen: the least score of a box's class, the pyramid's scales, the
    overlap (IoU) above which NMS drops the weaker of two boxes of one class, and the most
    boxes kept per image. Checked when made (UsageError)."""

    threshold: float | None = None  # None: the model's own (a single-shot file's), else 0.5
    scales: tuple[float, ...] = SCALES
    iou: float | None = None  # None: the model's own, else 0.3
    max_detections: int = 100

    def __post_init__(self) -> None:
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise UsageError(f"threshold {self.threshold}: expected a score from 0 to 1")
        if self.iou is not None and not 0 <= self.iou <= 1:
            raise UsageError(f"IoU {self.iou}: expected an overlap from 0 to 1")
        if not self.scales or any(
            not (math.isfinite(s) and 0 < s <= MAX_SCALE) for s in self.scales
        ):
            raise UsageError(
                f"scales {', '.join(map(str, self.scales)) or '(none)'}: expected factors "
                f"above 0 and at most {MAX_SCALE:g}, like 0.5,1,2"
            )
        if self.max_detections < 1:
            raise UsageError("keep at least one detection per image")

    def chosen(self, score: float = 0.5, iou: float = 0.3) -> tuple[float, float]:
        """(threshold, IoU): as given, else these defaults (a model's own, where it has them)."""
        return (
            score if self.threshold is None else self.threshold,
            iou if self.iou is None else self.iou,
        )


def _no_background(params: Any) -> int | None:
    return None


@dataclass(frozen=True)
class Decoder(Generic[P]):
    """One way of turning a detector file's outputs into boxes, declared once, in its module's
    ``RECORDS`` (netspec.runtime.decoders finds it there)."""

    name: str  # the `decoder` its files' `decoding` names
    outputs: tuple[OutputKind, ...]  # the kinds of the file's outputs it reads, in order
    # What a file with those outputs but no decoding lacks, said to the person who runs it
    # (`boxes without their grid`).
    missing: str
    # The parameters checked against the rest of the file (`source` names it in errors,
    # MetadataError for a bad value, ModelError for one the file's outputs contradict).
    read: Callable[[Params, ModelInfo, str], P]
    # One model-ready image (1, C, H, W) to boxes in its pixels.
    decode: Callable[[Model, P, FloatArray, DetectOptions], Detections]
    # The class that means "no object here", where the model has one.
    background: Callable[[P], int | None] = _no_background


@dataclass(frozen=True)
class Detector(Generic[P]):
    """A decoder with the parameters it read from one file."""

    decoder: Decoder[P]
    params: P

    def decode(self, model: Model, image: FloatArray, options: DetectOptions) -> Detections:
        """The boxes in one model-ready image (1, C, H, W), in its pixels."""
        return self.decoder.decode(model, self.params, image, options)

    @property
    def background(self) -> int | None:
        """The class that means "no object here", where the model has one."""
        return self.decoder.background(self.params)


def read_record(validator: SchemaValidator, params: Params, name: str, source: str) -> Any:
    """A decoder's parameters made its record by `validator` (netspec.artifact.record_schema),
    a bad one a MetadataError naming `source`, the decoder and the field."""
    try:
        return validator.validate_python(dict(params))
    except ValidationError as e:
        raise MetadataError(f"{source}: bad netspec metadata: {first_error(e, name)}") from None


def resize(image: FloatArray, height: int, width: int) -> FloatArray:
    """(1, C, H, W) resized bilinearly (Pillow, antialiased when shrinking)."""
    from PIL import Image

    if image.shape[2:] == (height, width):
        return image
    out = np.empty((1, image.shape[1], height, width), np.float32)
    for c in range(image.shape[1]):
        plane = Image.fromarray(np.ascontiguousarray(image[0, c]), mode="F")
        out[0, c] = np.asarray(plane.resize((width, height), Image.Resampling.BILINEAR))
    return out


def run_image(model: Model, image: FloatArray) -> FloatArray:
    """The model's first output on one image; InputError where ONNX Runtime cannot take it."""
    try:
        return model.run(image)[0]
    except Exception as e:  # ONNX Runtime's own error types for shapes it cannot take
        raise InputError(
            f"{model.path}: cannot run on an image of {fmt_shape(image.shape[1:])} "
            f"({first_line(e)})"
        ) from None
