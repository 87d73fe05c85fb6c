"""`ssd`: a single-shot multibox detection head (SSD, Liu et al. 2016) over several maps.

`ssd(a, b, classes=10, scales=[0.1, 0.25], ratios=[1, 0.5])` reads feature maps of several
sizes, finest first. At every position of map k it places default boxes centred on the
position, one per aspect ratio r (w/h) in `ratios`, of width s_k sqrt(r) and height
s_k / sqrt(r) as fractions of the input's width and height (s_k the map's entry of
`scales`), and with `extra=true` (the default) the paper's one more of ratio 1 and size
sqrt(s_k s_{k+1}) (s_{K+1} = 1 after the last map). A map therefore carries A = len(ratios)
(+ 1) boxes per position, and its channels are, box by box, the box's 4 offsets from its
default box (dx, dy, dw, dh, scaled by the variances 0.1 and 0.2) and 1 + C class scores
(logits, the background first): A * (5 + C) channels, which a 3x3 convolution gives it.

The operation has no weights: its output is every default box's numbers as rows, map by
map, position by position (row-major) and box by box, ``(sum of H*W*A) x (5 + C)``, what
training's `loss ssd` reads (netspec.tasks.ssd: matching by IoU, hard negative mining,
smooth L1 and cross entropy). The network's output kind becomes `detections`: the exported
graph decodes the rows (netspec.lower.ssd) to boxes in input pixels, keeps the class scores
of at least `floor`, suppresses per class the boxes overlapping a better one by more than
`iou`, and keeps the `keep` best as ``keep x 6`` rows (x1, y1, x2, y2, score, class; a
row of class -1 is empty). `netspec detect` shows those of at least `score` (the runtime's
`ssd` decoder, netspec.runtime.decoders.ssd, reads the file's `decoding`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from netspec.artifact import Decoding
from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    RF,
    HeadLoss,
    LossParams,
    OpDef,
    Pos,
    ShapeError,
    register,
    rf_whole,
)
from netspec.text import fmt_shape

Fraction = Annotated[float, Field(ge=0, le=1)]
Scale = Annotated[float, Field(gt=0, le=1)]  # a default box's side, a fraction of the input
Ratio = Annotated[float, Field(gt=0, le=100)]  # a default box's width over its height
MAX_KEEP = 1000  # rows the exported graph keeps (each a step of its suppression)
DELTAS = 4  # each default box's offsets: dx, dy, dw, dh
VARIANCES = (0.1, 0.2)  # SSD's scaling of the centre offsets and of the log sizes


class SsdParams(OpParams):
    """`ssd(a, b, classes=10, scales=[0.1, 0.25], ratios=[1, 0.5] [, extra=true]
    [, score=0.3] [, floor=0.01] [, iou=0.45] [, keep=50])`."""

    classes: Pos
    scales: Annotated[tuple[Scale, ...], Field(min_length=1, max_length=64)]
    ratios: Annotated[tuple[Ratio, ...], Field(min_length=1, max_length=64)] = (1.0, 2.0, 0.5)
    extra: bool = True
    score: Fraction = 0.3
    floor: Fraction = 0.01
    iou: Fraction = 0.45
    keep: Annotated[int, Field(gt=0, le=MAX_KEEP, strict=True)] = 50

    @property
    def per_position(self) -> int:
        """Default boxes at each position of a map: one per ratio, and the extra one."""
        return len(self.ratios) + int(self.extra)

    @property
    def fields(self) -> int:
        """Numbers per default box: 4 offsets, the background's score and C classes'."""
        return DELTAS + 1 + self.classes


class SsdLoss(LossParams):
    """`loss ssd [match=0.5] [negatives=3] [alpha=1]`: the IoU from which a default box
    matches a true box, the negatives kept per match (hard negative mining) and the weight
    of the boxes' smooth L1 beside the classes' cross entropy; None is the paper's 0.5, 3
    and 1 (netspec.tasks.ssd)."""

    match: Annotated[float, Field(gt=0, le=1)] | None = None
    negatives: Annotated[float, Field(ge=0, le=1000)] | None = None
    alpha: Annotated[float, Field(ge=0)] | None = None


def _maps(p: SsdParams, ins: Sequence[Shape]) -> list[tuple[int, int]]:
    """Each input's (H, W), checked: feature maps of known size, each with the channels its
    default boxes need, one scale per map."""
    if len(p.scales) != len(ins):
        raise ShapeError(
            f"ssd reads {len(ins)} maps but has {len(p.scales)} scales",
            hint=f"give one scale per map, finest first, e.g. scales=[{_example(len(ins))}]",
        )
    need = p.per_position * p.fields
    maps = []
    for k, shape in enumerate(ins, 1):
        if len(shape) != 3:
            raise ShapeError(
                f"ssd reads feature maps (C x H x W); its input {k} is {fmt_shape(shape)}",
                hint="give it maps from before any dense stage or flatten",
            )
        c, h, w = shape
        if not (isinstance(h, int) and isinstance(w, int)):
            raise ShapeError(
                f"ssd places default boxes on maps of known size; its input {k} is "
                f"{fmt_shape(shape)}",
                hint="give the network an input of fixed size",
            )
        if isinstance(c, int) and c != need:
            raise ShapeError(
                f"ssd's input {k} has {c} channels; its {p.per_position} default boxes per "
                f"position of {p.fields} numbers (4 offsets, background and {p.classes} "
                f"classes) need {need}",
                hint=f"end that map with a convolution to {need} maps, e.g. conv {need} "
                "3x3 pad=same",
            )
        maps.append((h, w))
    return maps


def _example(n: int) -> str:
    return ", ".join(f"{0.1 * 2**k:.2g}" for k in range(n))


def _ssd_shape(p: SsdParams, ins: Sequence[Shape]) -> Shape:
    rows = sum(h * w for h, w in _maps(p, ins)) * p.per_position
    return (rows, p.fields)


@dataclass(frozen=True)
class Ssd:
    """An SSD head as training and export use it: its maps' sizes (H, W), finest first,
    its parameters, and the input's (H, W), which its boxes are decoded to."""

    maps: tuple[tuple[int, int], ...]
    classes: int
    scales: tuple[float, ...]
    ratios: tuple[float, ...]
    extra: bool
    score: float
    floor: float
    iou: float
    keep: int
    image: tuple[int, int]

    @property
    def rows(self) -> int:
        """Default boxes per image."""
        per_position = len(self.ratios) + int(self.extra)
        return sum(h * w for h, w in self.maps) * per_position

    def sizes(self, k: int) -> list[tuple[float, float]]:
        """Map k's default boxes' (width, height), as fractions of the input, in order."""
        s = self.scales[k]
        boxes = [(s * math.sqrt(r), s / math.sqrt(r)) for r in self.ratios]
        if self.extra:
            after = self.scales[k + 1] if k + 1 < len(self.scales) else 1.0
            side = math.sqrt(s * after)
            boxes.append((side, side))
        return boxes

    def priors(self) -> list[tuple[float, float, float, float]]:
        """Every default box (cx, cy, w, h) as fractions of the input, in the order of the
        head's rows: map by map, position by position (row-major), box by box."""
        out: list[tuple[float, float, float, float]] = []
        for k, (h, w) in enumerate(self.maps):
            sizes = self.sizes(k)
            for i in range(h):
                for j in range(w):
                    cx, cy = (j + 0.5) / w, (i + 0.5) / h
                    out.extend((cx, cy, bw, bh) for bw, bh in sizes)
        return out


def ssd_of(params: Any, inputs: Sequence[Shape], image: Shape) -> Ssd | None:
    """The head an `ssd` node with these parameters and input shapes describes, over an
    input of per-sample shape ``image`` (None for another operation, or a symbolic size)."""
    h, w = image[-2], image[-1]
    if not (isinstance(params, SsdParams) and isinstance(h, int) and isinstance(w, int)):
        return None
    return Ssd(
        maps=tuple(_maps(params, inputs)),
        classes=params.classes,
        scales=params.scales,
        ratios=params.ratios,
        extra=params.extra,
        score=params.score,
        floor=params.floor,
        iou=params.iou,
        keep=params.keep,
        image=(h, w),
    )


def rows_decoding(decoder: str, params: Any, image: Shape) -> Decoding | None:
    """The decoding of a head whose `detections` are kept rows (SSD's, and the two-stage
    head's): its decoder, with the classes, the rows kept, the input's (H, W) and the
    thresholds; None where a symbolic size leaves the input's size unknown."""
    h, w = image[-2], image[-1]
    if not (isinstance(h, int) and isinstance(w, int)):
        return None
    return Decoding(
        decoder,
        {
            "classes": params.classes,
            "keep": params.keep,
            "image": (h, w),
            "score": params.score,
            "floor": params.floor,
            "iou": params.iou,
        },
    )


def _decoding(params: Any, shape: Shape, rf: RF, image: Shape) -> Decoding | None:
    """The file's decoding: its `detections` read by the runtime's `ssd` decoder."""
    return rows_decoding("ssd", params, image) if isinstance(params, SsdParams) else None


register(
    OpDef(
        name="ssd",
        params=SsdParams,
        shape=_ssd_shape,
        arity=None,
        rf=rf_whole,  # rows of default boxes from maps of several scales: not one window
        output="detections",
        head=True,
        decoding=_decoding,
        loss=HeadLoss("ssd", SsdLoss),
        doc="An SSD detection head over several maps: default boxes of `scales` and `ratios` "
        "at every position, each predicting 4 offsets and 1 + `classes` class scores.",
    )
)
