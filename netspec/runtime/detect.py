"""Detection on ONNX Runtime: a detector file and an image in, boxes out (never torch).

What a model's output means decides how its boxes are found: `DECODERS` maps an output
kind (`netspec.artifact.OutputKind`, from the file's metadata) to one function
`(model, image, options) -> Detections`. The image is model-ready values at its own size,
(1, C, H, W); the boxes come back in its pixels (xyxy), best first, after class-wise
non-maximum suppression, the background class dropped. A new kind of detector (a
single-shot grid, kind `boxes`) is one such function and one entry in `DECODERS`.

`class_map` (a classifier made fully convolutional, netspec.export.fcn) is OverFeat's
pipeline: the image at several scales (a pyramid), the score map of each, every position
whose best non-background class reaches the threshold a box (its window, mapped back
through the receptive field's start and jump and the scale), then NMS per class.

The boxes, their NMS and their painter are netspec.detection's, shared with training.
`netspec detect`'s loop over image files is netspec.runtime.detect_files; `netspec eval`
on scenes is netspec.runtime.evaluate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from netspec.artifact import ModelInfo, OutputKind, SlidingWindow, class_scores
from netspec.detection.boxes import Detections, as_boxes, select
from netspec.errors import InputError, ModelError, UsageError
from netspec.runtime.inputs import MAX_IMAGE_PIXELS
from netspec.runtime.session import Model
from netspec.text import first_line, fmt_shape

FloatArray = npt.NDArray[np.float32]

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


Decoder = Callable[[Model, FloatArray, DetectOptions], Detections]


def detector_kind(info: ModelInfo, source: str) -> OutputKind:
    """The model's output kind, if `netspec detect` can find boxes with it; else a
    ModelError that says what it is and what a detector is."""
    kind = info.outputs[0].kind
    if len(info.outputs) != 1 or kind not in DECODERS:
        raise ModelError(
            f"{source}: not a detector (its output is {', '.join(o.kind for o in info.outputs)});"
            f" netspec detect takes a model whose output is {' or '.join(DECODERS)}",
            hint="make a window classifier a detector with `netspec convert RUN "
            "--fully-convolutional -o fcn.onnx`",
        )
    window = info.sliding_window
    if kind == "class_map" and window is None:
        raise ModelError(f"{source}: a class map without its windows (no sliding_window)")
    classes = len(info.labels or ())
    if window is not None and (
        window.background >= classes or (window.boxes and len(window.boxes) != classes)
    ):
        raise ModelError(
            f"{source}: its sliding_window does not fit its {classes} labels (background "
            f"{window.background}, {len(window.boxes or ())} boxes)"
        )
    if kind == "boxes" and info.single_shot is None:
        raise ModelError(f"{source}: boxes without their grid (no single_shot)")
    shape = info.outputs[0].shape
    if info.single_shot is not None and shape is not None and tuple(shape) != grid_shape(info):
        raise ModelError(f"{source}: {_not_the_grid(shape, info)}")
    return kind


def grid_shape(info: ModelInfo) -> tuple[int, int]:
    """The per-sample shape of a single-shot detector's boxes: a row (x1, y1, x2, y2, then
    one confidence per class) for each box of each cell."""
    shot = info.single_shot
    assert shot is not None
    return shot.grid * shot.grid * shot.boxes, 4 + shot.classes


def _not_the_grid(shape: tuple[int | str, ...], info: ModelInfo) -> str:
    shot = info.single_shot
    assert shot is not None
    return (
        f"its output is {fmt_shape(shape)}, but its single_shot grid ({shot.grid}x{shot.grid} "
        f"cells of {shot.boxes} boxes, {shot.classes} classes) gives {fmt_shape(grid_shape(info))}"
    )


def detect(model: Model, image: FloatArray, options: DetectOptions) -> Detections:
    """The boxes in one model-ready image (1, C, H, W), by the decoder of the model's kind."""
    return DECODERS[detector_kind(model.info, str(model.path))](model, image, options)


# ---- class_map: OverFeat's sliding window ----------------------------------------------


def sliding_window(model: Model, image: FloatArray, options: DetectOptions) -> Detections:
    """The image pyramid through the FCN, each score map to boxes, NMS per class."""
    window = model.info.sliding_window
    assert window is not None  # detector_kind checked it
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
        scores = _run(model, resize(image, *size))
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


def _run(model: Model, image: FloatArray) -> FloatArray:
    try:
        return model.run(image)[0]
    except Exception as e:  # ONNX Runtime's own error types for shapes it cannot take
        raise InputError(
            f"{model.path}: cannot run on an image of {fmt_shape(image.shape[1:])} "
            f"({first_line(e)})"
        ) from None


# ---- boxes: a single-shot grid (YOLO v1) ----------------------------------------------


def single_shot(model: Model, image: FloatArray, options: DetectOptions) -> Detections:
    """A single-shot detector's boxes (netspec.export.detection): the image resized to the
    model's input, one pass, every proposed box whose class-specific confidence reaches the
    threshold (the file's `single_shot.score`, or `--threshold` where given), NMS per class
    at the file's IoU (or `--iou`), the boxes scaled back to the image's own pixels."""
    shot = model.info.single_shot
    assert shot is not None  # detector_kind checked it
    height, width = image.shape[2:]
    rows = _run(model, resize(image, *shot.image))
    if rows.shape[1:] != grid_shape(model.info):
        raise ModelError(f"{model.path}: {_not_the_grid(rows.shape[1:], model.info)}")
    out = rows[0]  # (S*S*B, 4 + C)
    threshold, overlap = options.chosen(shot.score, shot.iou)
    scale = np.array([width, height, width, height], np.float32) / np.array(
        [shot.image[1], shot.image[0]] * 2, np.float32
    )
    found = select(out[:, :4] * scale, out[:, 4:], threshold, overlap, options.max_detections)
    return found.clipped(height, width)


# The decoders, by output kind: what a new kind of detector adds.
DECODERS: dict[OutputKind, Decoder] = {"class_map": sliding_window, "boxes": single_shot}
