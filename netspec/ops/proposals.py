"""`proposals`: Faster R-CNN's proposal layer, a region proposal network's maps to a RoI set.

`proposals(objectness, deltas, sizes=[16, 32], ratios=[0.5, 1, 2], keep=32)` reads an RPN's
two maps over the same H x W cells. At every cell it places A = len(sizes)·len(ratios)
anchors centred where the cell's receptive field is centred (its start and jump, so nothing
is written by hand), size by size and ratio by ratio, of width s·sqrt(r) and height
s / sqrt(r) input pixels. Map ``objectness`` has one logit per anchor (A maps), ``deltas``
four numbers per anchor (4·A maps, anchor by anchor: dx, dy, dw, dh, Faster R-CNN's
parametrization). Each anchor's box is decoded, clipped to the input, dropped when a side is
shorter than `min_size` pixels or its score (the sigmoid of its logit) is not above `score`;
of the `pre` best, non-maximum suppression at IoU `iou` keeps at most `keep`, best first.

The output is a RoI set, `keep x 5` per image: x1, y1, x2, y2, score, rows after the last
box empty (zeros, score -1). Its shape never depends on the data: an image with no box above
the threshold gets `keep` empty rows, one with more candidates its `keep` best. The torch
half, exported with ONNX's TopK and NonMaxSuppression, is netspec.lower.proposals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.registry import RF, OpDef, Pos, ShapeError, register, rf_whole
from netspec.text import fmt_shape

DELTAS = 4  # an anchor's dx, dy, dw, dh
PRE_FACTOR = 10  # candidates before suppression per box kept, where `pre` is not given
Side = Annotated[float, Field(gt=0, le=100_000)]
Ratio = Annotated[float, Field(gt=0, le=100)]
Fraction = Annotated[float, Field(ge=0, le=1)]


class ProposalsParams(OpParams):
    """`proposals(objectness, deltas, sizes=[16, 32], ratios=[0.5, 1, 2], keep=32 [, pre=]
    [, iou=0.7] [, score=0] [, min_size=1])`."""

    sizes: Annotated[tuple[Side, ...], Field(min_length=1, max_length=16)]
    ratios: Annotated[tuple[Ratio, ...], Field(min_length=1, max_length=16)] = (0.5, 1.0, 2.0)
    keep: Annotated[int, Field(gt=0, le=10_000, strict=True)]
    pre: Pos | None = None
    iou: Fraction = 0.7
    score: Fraction = 0.0
    min_size: Annotated[float, Field(ge=0, le=100_000)] = 1.0

    @property
    def per_cell(self) -> int:
        """Anchors at each cell: one per size and ratio."""
        return len(self.sizes) * len(self.ratios)

    def anchor_sizes(self) -> list[tuple[float, float]]:
        """Each anchor's (width, height) in input pixels, in the order of the maps' channels."""
        return [(s * math.sqrt(r), s / math.sqrt(r)) for s in self.sizes for r in self.ratios]


class ProposalsPlaced(OpParams):
    """What the builder is given: the parameters, the anchors' cells (H, W), the centre of
    the first and the step between cells in input pixels (y, x), the input's (H, W), and the
    candidates kept before suppression."""

    params: ProposalsParams
    cells: tuple[int, int]
    start: tuple[float, float]
    jump: tuple[float, float]
    image: tuple[int, int]
    pre: int

    def anchor_boxes(self) -> list[tuple[float, float, float, float]]:
        """Every anchor as placed, before any deltas move it: x1, y1, x2, y2 in input pixels
        (not clipped), cell by cell (row-major), anchor by anchor: the order of the
        objectness map's logits, and of netspec.lower.proposals' anchors. What `show` and
        `serve` draw the RPN's best anchors from, without torch."""
        (h, w), (sy, sx), (jy, jx) = self.cells, self.start, self.jump
        sizes = self.params.anchor_sizes()
        return [
            (sx + jx * j - aw / 2, sy + jy * i - ah / 2, sx + jx * j + aw / 2, sy + jy * i + ah / 2)
            for i in range(h)
            for j in range(w)
            for aw, ah in sizes
        ]


def _cells(p: ProposalsParams, ins: Sequence[Shape]) -> tuple[int, int]:
    """The maps' H x W, checked: one logit and four deltas per anchor, over the same cells."""
    wants = (p.per_cell, DELTAS * p.per_cell)
    for k, (shape, want, what) in enumerate(zip(ins, wants, ("1 logit", "4 deltas"), strict=True)):
        if len(shape) != 3 or not all(isinstance(d, int) for d in shape[1:]):
            raise ShapeError(
                f"proposals reads feature maps of known size; its input {k + 1} is "
                f"{fmt_shape(shape)}",
                hint="give it an RPN's maps, e.g. conv A 1x1 and conv 4A 1x1",
            )
        if shape[0] != want:
            raise ShapeError(
                f"proposals' {len(p.sizes)} sizes x {len(p.ratios)} ratios place {p.per_cell} "
                f"anchors per cell, {what} each: input {k + 1} needs {want} maps, has "
                f"{shape[0]}",
                hint=f"end it with conv {want} 1x1",
            )
    if ins[0][1:] != ins[1][1:]:
        raise ShapeError(
            f"proposals' objectness ({fmt_shape(ins[0])}) and deltas ({fmt_shape(ins[1])}) "
            "cover different cells",
            hint="compute both from the same map",
        )
    return int(ins[0][1]), int(ins[0][2])


def candidates(p: ProposalsParams, ins: Sequence[Shape]) -> tuple[int, int]:
    """(anchors of each image, candidates before suppression), checked against `keep`."""
    h, w = _cells(p, ins)
    anchors = h * w * p.per_cell
    if p.keep > anchors:
        raise ShapeError(
            f"proposals keeps {p.keep} boxes of {anchors} anchors ({h}x{w} cells x {p.per_cell})",
            hint=f"keep at most {anchors}",
        )
    pre = min(anchors, p.pre if p.pre is not None else PRE_FACTOR * p.keep)
    if pre < p.keep:
        raise ShapeError(
            f"proposals keeps {p.keep} boxes of its pre={pre} best candidates",
            hint=f"give pre={p.keep} or more",
        )
    return anchors, pre


def _shape(p: ProposalsParams, ins: Sequence[Shape]) -> Shape:
    candidates(p, ins)
    return (p.keep, 5)


def _placed(
    p: ProposalsParams, rfs: Sequence[RF], ins: Sequence[Shape], image: Shape
) -> ProposalsPlaced:
    """The anchors' cells in input pixels, from the objectness map's receptive field; every
    anchor must fit the input."""
    height, width = image[-2], image[-1]
    rf = rfs[0]
    if len(image) != 3 or not (isinstance(height, int) and isinstance(width, int)) or rf.whole:
        raise ShapeError(
            "proposals places anchors on maps of an image of known size",
            hint="give the network an image input of fixed size, and maps with positions",
        )
    for (aw, ah), (s, r) in zip(
        p.anchor_sizes(), ((s, r) for s in p.sizes for r in p.ratios), strict=True
    ):
        if aw > width or ah > height:
            raise ShapeError(
                f"proposals' anchor of size {s:g} and ratio {r:g} is {aw:.4g}x{ah:.4g} pixels "
                f"(w x h), larger than the {height}x{width} input",
                hint="use smaller sizes, or ratios nearer 1",
            )
    _, pre = candidates(p, ins)
    return ProposalsPlaced(
        params=p,
        cells=_cells(p, ins),
        start=(rf.start[0], rf.start[1]),
        jump=(rf.jump[0], rf.jump[1]),
        image=(height, width),
        pre=pre,
    )


register(
    OpDef(
        name="proposals",
        params=ProposalsParams,
        shape=_shape,
        arity=2,
        rf=rf_whole,  # each box is chosen from every anchor's score
        output="tensor",
        makes_rois=True,
        placed=_placed,
        doc="`proposals(objectness, deltas, sizes=[16, 32], ratios=[0.5, 1, 2], keep=32)`: "
        "Faster R-CNN's proposal layer, anchors decoded, clipped, top-k and suppressed to a "
        "RoI set of `keep` boxes (x1, y1, x2, y2, score) per image.",
    )
)
