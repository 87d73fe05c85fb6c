"""`edge_windows`: R-CNN's region proposals from a classical cue, inside the network.

`image | edge_windows sizes=[12, 20, 32] ratios=[0.3, 0.55, 0.9] stride=4 keep=48` proposes
regions of an image without learned weights, as R-CNN's selective search did, so that the
whole pipeline is one ONNX file. Windows of width s·sqrt(r) and height s / sqrt(r) pixels
(`proposals`' anchor sizes), rounded to whole pixels, are centred on a grid every `stride`
pixels (H // stride x W // stride centres, the grid centred in the image) and clipped to it.
Each is scored by edge contrast, the objectness cue of Alexe et al. (2010) and the idea
behind EdgeBoxes (Zitnick and Dollár 2014): an object's edges lie inside its box, not around
it, and its outline touches the four sides of its tight box. The edges are the gradient
magnitude (central differences, the border pixel repeated; the mean over channels), summed
over any box with four lookups of its integral image. With ``inner`` the edge density (per
pixel) in the window, ``ring`` that in the ring around it (the window grown by
`ring`·side / 2 on each edge, ring 1: sides twice the window's, clipped) and ``sides`` the
least of the densities in four strips along the inside of its edges (each `band` of the
side thick, at least a pixel), the score is

    inner / (inner + ring + 1e-6) · sides / (sides + ring + 1e-6)

in [0, 1). A window that cuts through an object has edges in its ring; one on a single edge
of it, or larger than it, has a side without edges. A window with no ring (as large as the
image) scores 0, and so does one without edges: a flat image proposes nothing. Of the `pre`
best (10·keep by default), non-maximum suppression at IoU `iou` keeps `keep`, as `proposals`
does: a RoI set of ``keep x 5`` rows, x1, y1, x2, y2, score, best first, the rows after the
last box empty (zeros, score -1).

The windows' corners are static, so every box sum is a gather at fixed indices of the
integral image (ONNX CumSum and Gather). The torch half is netspec.lower.windows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.proposals import PRE_FACTOR, Fraction, Ratio, Side
from netspec.ops.registry import RF, Cost, OpDef, Pos, ShapeError, register, rf_whole
from netspec.text import fmt_shape

# Multiply-adds, estimated: a pixel's gradient (two differences, two squares, a root) per
# channel; an integral image's entry; a window's six box sums of 4 lookups and its score.
GRADIENT_MACS, TABLE_MACS, WINDOW_MACS = 4, 2, 36


class EdgeWindowsParams(OpParams):
    """`edge_windows sizes=[12, 20, 32] ratios=[0.5, 1, 2] stride=4 keep=48 [pre=] [iou=0.5]
    [ring=1] [band=0.2]`."""

    sizes: Annotated[tuple[Side, ...], Field(min_length=1, max_length=16)]
    ratios: Annotated[tuple[Ratio, ...], Field(min_length=1, max_length=16)] = (0.5, 1.0, 2.0)
    stride: Pos
    keep: Annotated[int, Field(gt=0, le=10_000, strict=True)]
    pre: Pos | None = None
    iou: Fraction = 0.5
    ring: Annotated[float, Field(gt=0, le=10)] = 1.0
    band: Annotated[float, Field(gt=0, le=0.5)] = 0.2

    @property
    def per_cell(self) -> int:
        """Windows at each centre: one per size and ratio."""
        return len(self.sizes) * len(self.ratios)

    def window_sizes(self) -> list[tuple[float, float]]:
        """Each window's (width, height) in pixels, size by size, ratio by ratio."""
        return [(s * math.sqrt(r), s / math.sqrt(r)) for s in self.sizes for r in self.ratios]


class EdgeWindowsPlaced(OpParams):
    """What the builder is given: the parameters, the image's (H, W), the grid's centres
    (H, W), the first one's (y, x) in pixels, and the candidates kept before suppression."""

    params: EdgeWindowsParams
    image: tuple[int, int]
    cells: tuple[int, int]
    start: tuple[float, float]
    pre: int


def _image(shape: Shape) -> tuple[int, int, int]:
    """(C, H, W) of an image of known size."""
    if len(shape) != 3 or not all(isinstance(d, int) for d in shape):
        raise ShapeError(
            f"edge_windows reads an image of known size (C x H x W), got {fmt_shape(shape)}",
            hint="give it the network's image input, e.g. rois = image | edge_windows ...",
        )
    c, h, w = (int(d) for d in shape)
    return c, h, w


def placed(p: EdgeWindowsParams, shape: Shape) -> EdgeWindowsPlaced:
    """The windows' grid over an image of this shape, checked: every window within the image
    and at least a pixel wide, a grid of at least one centre, `keep` and `pre` possible."""
    _, h, w = _image(shape)
    shapes = ((s, r) for s in p.sizes for r in p.ratios)
    for (ww, wh), (s, r) in zip(p.window_sizes(), shapes, strict=True):
        window = f"edge_windows' window of size {s:g} and ratio {r:g} is {ww:.4g}x{wh:.4g} pixels"
        if ww > w or wh > h:
            raise ShapeError(
                f"{window} (w x h), larger than the {h}x{w} image",
                hint="use smaller sizes, or ratios nearer 1",
            )
        if min(ww, wh) < 1:
            raise ShapeError(f"{window} (w x h): a side under a pixel", hint="use larger sizes")
    if p.stride > min(h, w):
        raise ShapeError(
            f"edge_windows' stride {p.stride} is larger than the {h}x{w} image: no centre fits",
            hint=f"use a stride of at most {min(h, w)}",
        )
    cells = (h // p.stride, w // p.stride)
    windows = cells[0] * cells[1] * p.per_cell
    if p.keep > windows:
        raise ShapeError(
            f"edge_windows keeps {p.keep} boxes of {windows} windows ({cells[0]}x{cells[1]} "
            f"centres x {p.per_cell})",
            hint=f"keep at most {windows}, or use a smaller stride",
        )
    pre = min(windows, p.pre if p.pre is not None else PRE_FACTOR * p.keep)
    if pre < p.keep:
        raise ShapeError(
            f"edge_windows keeps {p.keep} boxes of its pre={pre} best candidates",
            hint=f"give pre={p.keep} or more",
        )
    start = ((h - (cells[0] - 1) * p.stride) / 2, (w - (cells[1] - 1) * p.stride) / 2)
    return EdgeWindowsPlaced(params=p, image=(h, w), cells=cells, start=start, pre=pre)


def _shape(p: EdgeWindowsParams, ins: Sequence[Shape]) -> Shape:
    placed(p, ins[0])
    return (p.keep, 5)


def _cost(p: EdgeWindowsParams, ins: Sequence[Shape], out: Shape) -> Cost:
    c, h, w = _image(ins[0])
    grid = placed(p, ins[0])
    windows = grid.cells[0] * grid.cells[1] * p.per_cell
    return Cost(macs=GRADIENT_MACS * c * h * w + TABLE_MACS * h * w + WINDOW_MACS * windows)


def _placed(
    p: EdgeWindowsParams, rfs: Sequence[RF], ins: Sequence[Shape], image: Shape
) -> EdgeWindowsPlaced:
    """The grid, where the input's pixels are the network input's: boxes are in its pixels."""
    rf = rfs[0]
    at_pixels = rf.jump == (1, 1) and rf.start == (0.5, 0.5) and ins[0][-2:] == image[-2:]
    if rf.whole or rf.region or rf.line or not at_pixels:
        raise ShapeError(
            f"edge_windows reads the image's own pixels; its input ({fmt_shape(ins[0])}) is "
            f"not at the network input's ({fmt_shape(image)}) positions",
            hint="give it the image, or maps of the image's size and positions "
            "(stride 1, pad=same)",
        )
    return placed(p, ins[0])


register(
    OpDef(
        name="edge_windows",
        params=EdgeWindowsParams,
        shape=_shape,
        cost=_cost,
        rf=rf_whole,  # each box is chosen from every window's score
        output="tensor",
        makes_rois=True,
        placed=_placed,
        doc="`edge_windows sizes=[12, 20, 32] ratios=[0.5, 1, 2] stride=4 keep=48`: R-CNN's "
        "proposals without learned weights, grid windows scored by edge contrast (the edge "
        "density inside and along the four sides against the ring around), top-k and "
        "suppressed to a RoI set of `keep` boxes (x1, y1, x2, y2, score) per image.",
    )
)
