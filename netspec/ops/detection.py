"""`detect`: a single-shot detection head (YOLO v1, Redmon et al. 2016) over a grid map.

`conv 20 1x1 | detect boxes=2 classes=10` declares that the map before it, ``(B*5+C) x S x S``,
is a grid of S x S cells, each predicting B boxes ``(x, y, w, h, confidence)`` and C class
probabilities. The channels of one cell are laid out as the paper's tensor:
``x1 y1 w1 h1 c1 ... xB yB wB hB cB p1 ... pC``, where (x, y) is the box centre within its
cell (0..1), (w, h) the square roots of its size as fractions of the input (the paper's
sqrt, so a big box's error weighs like a small one's), c the confidence that the cell holds
an object times the IoU of this box with it, and p the class probabilities given an object.

The values pass through unchanged (the network's raw map is what training's `loss yolo`
reads); the operation checks the channel count and makes the network's output kind
`boxes`, so that export adds the decoding to boxes in input pixels and `netspec detect`
knows what it holds. `grid=` is optional: given, it must be the map's size (a check that
reads as documentation). `score=` and `iou=` are the thresholds the exported detector
applies: the least class-specific confidence kept, and the overlap above which
non-maximum suppression drops the lower-scoring box of the same class. The file records
them, with the grid, as its `decoding` by the runtime's `single_shot` decoder
(netspec.runtime.decoders.single_shot): the operation's `decoding` fact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from netspec.artifact import Decoding
from netspec.ir import OpParams, Shape
from netspec.ops.registry import RF, OpDef, Pos, ShapeError, register, spatial

Fraction = Annotated[float, Field(ge=0, le=1)]


class DetectParams(OpParams):
    """`detect boxes=2 classes=10 [grid=7] [score=0.2] [iou=0.5]`."""

    boxes: Pos = 2
    classes: Pos
    grid: Pos | None = None
    score: Fraction = 0.2
    iou: Fraction = 0.5

    @property
    def channels(self) -> int:
        """What each cell predicts: B boxes of 5 numbers, then C class probabilities."""
        return self.boxes * 5 + self.classes


def _detect_shape(p: DetectParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "detect")
    if isinstance(c, int) and c != p.channels:
        raise ShapeError(
            f"detect boxes={p.boxes} classes={p.classes} needs {p.channels} channels per cell "
            f"(boxes*5 + classes = {p.boxes}*5 + {p.classes}), not {c}",
            hint=f"end the network with a 1x1 convolution to {p.channels} maps, "
            f"e.g. conv {p.channels} 1x1 | detect boxes={p.boxes} classes={p.classes}",
        )
    if isinstance(h, int) and isinstance(w, int) and h != w:
        raise ShapeError(
            f"detect needs a square grid of cells, got {h}x{w}",
            hint="give the network a square input, or crop the map to a square",
        )
    if p.grid is not None and isinstance(h, int) and h != p.grid:
        raise ShapeError(
            f"detect grid={p.grid}, but the map before it is {h}x{w}",
            hint=f"write grid={h}, or change the strides so the map is {p.grid}x{p.grid}",
        )
    return ins[0]


@dataclass(frozen=True)
class Head:
    """A detection head as `compile` describes it and export records it."""

    grid: int
    boxes: int
    classes: int
    score: float
    iou: float
    cell: tuple[float, float]  # the input pixels one cell spans (the jump), along (H, W)
    rf: tuple[float, float]  # the receptive field of one output position, along (H, W)
    first: tuple[float, float]  # the centre of cell (0, 0)'s receptive field, in input pixels
    image: tuple[int, int]  # the input's (H, W): boxes are decoded to its pixels

    @property
    def per_image(self) -> int:
        """The boxes the head proposes per image, before thresholds and suppression."""
        return self.grid * self.grid * self.boxes

    def text(self) -> str:
        """`grid 8x8 (cells of 16 px, each seeing 84x84 px of the input), 2 boxes and 10
        classes per cell: 128 boxes per image`."""
        cell = "x".join(_px(c) for c in sorted(set(self.cell)))
        seen = "x".join(_px(r) for r in self.rf)
        return (
            f"grid {self.grid}x{self.grid} (cells of {cell} px, each seeing {seen} px of the "
            f"input, the first centred at {_px(self.first[1])},{_px(self.first[0])}), "
            f"{self.boxes} boxes and {self.classes} classes per cell: "
            f"{self.per_image:,} boxes per image, kept above score {self.score:g}, "
            f"suppressed above IoU {self.iou:g}"
        )


def _px(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.3g}"


def head_of(params: Any, shape: Shape, rf: RF, image: Shape) -> Head | None:
    """The head a `detect` node with these parameters, output shape and receptive field
    describes, over an input of per-sample shape ``image`` (None where a size is symbolic)."""
    grid, h, w = shape[1], image[-2], image[-1]
    if not (isinstance(params, DetectParams) and isinstance(grid, int)):
        return None
    if not (isinstance(h, int) and isinstance(w, int)):
        return None
    return Head(
        grid=grid,
        boxes=params.boxes,
        classes=params.classes,
        score=params.score,
        iou=params.iou,
        cell=(rf.jump[0], rf.jump[1]),
        rf=(rf.size[0], rf.size[1]),
        first=(rf.start[0], rf.start[1]),
        image=(h, w),
    )


def _decoding(params: Any, shape: Shape, rf: RF, image: Shape) -> Decoding | None:
    """The file's decoding: its boxes read by the runtime's `single_shot` decoder, with the
    grid, the boxes and classes per cell, the input's (H, W) and the thresholds."""
    head = head_of(params, shape, rf, image)
    if head is None:
        return None
    return Decoding(
        "single_shot",
        {
            "grid": head.grid,
            "boxes": head.boxes,
            "classes": head.classes,
            "image": head.image,
            "score": head.score,
            "iou": head.iou,
        },
    )


register(
    OpDef(
        name="detect",
        params=DetectParams,
        shape=_detect_shape,
        output="boxes",
        head=True,
        decoding=_decoding,
        doc="A YOLO v1 detection head: the (boxes*5+classes) x S x S map is S x S cells, "
        "each predicting `boxes` boxes and `classes` class probabilities.",
    )
)
