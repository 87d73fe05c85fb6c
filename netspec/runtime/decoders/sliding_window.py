"""`sliding_window`: OverFeat's pipeline on a classifier made fully convolutional
(netspec.export.fcn writes its decoding).

The file's one output, kind `class_map`, holds at each position the classifier's scores for
one window. The image goes through at several scales (a pyramid); every position whose best
non-background class reaches the threshold is a box (its window, mapped back through the
receptive field's start and jump and the scale); then NMS per class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic_core import SchemaValidator
from pydantic_core import core_schema as cs

from netspec.artifact import (
    MAX_ELEMENTS,
    MAX_ENTRIES,
    Decoding,
    DecodingParam,
    ModelInfo,
    class_scores,
    record_schema,
)
from netspec.detection.boxes import Detections, as_boxes
from netspec.errors import InputError, ModelError
from netspec.runtime.decoders.base import (
    Decoder,
    DetectOptions,
    FloatArray,
    Params,
    read_record,
    resize,
    run_image,
)
from netspec.runtime.inputs import MAX_IMAGE_PIXELS

if TYPE_CHECKING:
    from netspec.runtime.session import Model

NAME = "sliding_window"


@dataclass(frozen=True)
class SlidingWindow:
    """What a `class_map` output's positions are: the scores at output position (row i,
    column j) are the classifier's on the window of `window` pixels (H, W) whose receptive
    field is centred at `start + (i, j) * jump` and spans `size` (all in input pixels, per
    axis (H, W); a pixel's centre is at +0.5). `scores` says what the numbers are (the
    classifier's own: logits or probabilities) and `background` which class means "no
    object here". `boxes`, where known, is each class's box (H, W) as shares of the window,
    centred in it (how the training windows framed their objects); without it a box is the
    receptive field."""

    window: tuple[int, int]
    size: tuple[float, float]
    jump: tuple[float, float]
    start: tuple[float, float]
    scores: Literal["logits", "probabilities"]
    background: int
    boxes: tuple[tuple[float, float], ...] | None = None

    @classmethod
    def from_params(cls, params: Params, source: str) -> SlidingWindow:
        """The decoding's parameters checked field by field (MetadataError naming `source`)."""
        window: SlidingWindow = read_record(_SCHEMA, params, NAME, source)
        return window

    def as_decoding(self) -> Decoding:
        """The file's `decoding` entry: these windows, read by this decoder."""
        params: dict[str, DecodingParam] = {k: v for k, v in asdict(self).items() if v is not None}
        return Decoding(NAME, params)


def _pair(item: cs.CoreSchema) -> cs.CoreSchema:
    """(H, W): one value per spatial axis."""
    return cs.tuple_schema([item, item])


_SCHEMA = SchemaValidator(
    record_schema(
        SlidingWindow,
        {
            "window": _pair(cs.int_schema(strict=True, gt=0, le=MAX_ELEMENTS)),
            "size": _pair(cs.float_schema(ge=0, le=MAX_ELEMENTS, allow_inf_nan=False)),
            "jump": _pair(cs.float_schema(gt=0, le=MAX_ELEMENTS, allow_inf_nan=False)),
            "start": _pair(cs.float_schema(ge=-MAX_ELEMENTS, le=MAX_ELEMENTS, allow_inf_nan=False)),
            "scores": cs.literal_schema(["logits", "probabilities"]),
            "background": cs.int_schema(strict=True, ge=0, lt=MAX_ENTRIES),
            "boxes": cs.with_default_schema(
                cs.nullable_schema(
                    cs.tuple_schema(
                        [_pair(cs.float_schema(gt=0, le=1, allow_inf_nan=False))],
                        variadic_item_index=0,
                        max_length=MAX_ENTRIES,
                    )
                ),
                default=None,
            ),
        },
    )
)


def read(params: Params, info: ModelInfo, source: str) -> SlidingWindow:
    """The file's windows, checked against its labels (one of them the background, and a
    box for each where boxes are given)."""
    window = SlidingWindow.from_params(params, source)
    classes = len(info.labels or ())
    if window.background >= classes or (window.boxes and len(window.boxes) != classes):
        raise ModelError(
            f"{source}: its sliding_window does not fit its {classes} labels (background "
            f"{window.background}, {len(window.boxes or ())} boxes)"
        )
    return window


def decode(
    model: Model, window: SlidingWindow, image: FloatArray, options: DetectOptions
) -> Detections:
    """The image pyramid through the FCN, each score map to boxes, NMS per class."""
    height, width = image.shape[2:]
    threshold, overlap = options.chosen()
    parts = []
    for scale in options.scales:
        size = (round(height * scale), round(width * scale))
        if size[0] < window.window[0] or size[1] < window.window[1]:
            continue  # the window does not fit at this scale
        if size[0] * size[1] > MAX_IMAGE_PIXELS:
            raise InputError(
                f"scale {scale:g} makes the {height}x{width} image {size[0]}x{size[1]}, over "
                f"the {MAX_IMAGE_PIXELS:,} pixels netspec reads; use smaller scales"
            )
        scores = run_image(model, resize(image, *size))
        factors = (size[0] / height, size[1] / width)
        parts.append(decode_map(scores[0], window, factors, threshold))
    found = Detections.concat(parts).suppressed(overlap, options.max_detections)
    return found.clipped(height, width)


def decode_map(
    scores: FloatArray, window: SlidingWindow, factors: tuple[float, float], threshold: float
) -> Detections:
    """One score map (K, rows, cols) to boxes: at each position the likeliest class other
    than the background, kept where its probability reaches `threshold`, its box centred on
    the position's receptive field (at start + index * jump), the class's share of the
    window across (`SlidingWindow.boxes`; the receptive field's `size` without them),
    divided by the scale `factors` (H, W) to land in the original image's pixels."""
    classes, _, cols = scores.shape
    flat = scores.reshape(classes, -1).T  # (positions, K)
    probs = flat if window.scores == "probabilities" else class_scores(flat, "logits")
    objects = probs.copy()
    objects[:, window.background] = -1.0
    best = objects.argmax(axis=1)
    score = objects[np.arange(len(best)), best]
    hit = np.flatnonzero(score >= threshold)
    i, j = np.divmod(hit, cols)
    cy = (window.start[0] + i * window.jump[0]) / factors[0]
    cx = (window.start[1] + j * window.jump[1]) / factors[1]
    if window.boxes is None:
        size = np.tile(np.asarray(window.size, np.float64), (len(hit), 1))
    else:
        size = np.asarray(window.boxes, np.float64)[best[hit]] * np.asarray(window.window)
    half_h, half_w = size[:, 0] / 2 / factors[0], size[:, 1] / 2 / factors[1]
    boxes = as_boxes(np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1))
    return Detections(boxes, score[hit].astype(np.float32), best[hit].astype(np.int64))


def _background(window: SlidingWindow) -> int | None:
    return window.background


RECORDS = (
    Decoder(
        name=NAME,
        outputs=("class_map",),
        missing="a class map without its windows",
        read=read,
        decode=decode,
        background=_background,
    ),
)
