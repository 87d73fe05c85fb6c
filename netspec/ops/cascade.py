"""Viola and Jones' detector (2001) as two operations: `integral` and the `cascade` head.

`integral` turns a one-channel image ``1 x H x W`` into its summed-area tables ``2 x (H+1) x
(W+1)``: map 0 holds at (y, x) the sum of the pixels above and left of it, map 1 the sum of
their squares, each with a row and a column of zeros first. Any rectangle's sum is then 4
lookups, whatever its size, and so is a window's mean and variance.

`cascade window=24 haar=[edge_x, ...] sizes=[6, 12] step=2 scales=[1, 1.5] stride=2` reads
those tables and is the detector. Its pool of Haar-like features is every kernel of `haar`
(a matrix of +1 and -1 blocks: `[-1 1]` is two rectangles side by side, scikit-image's
`type-2-x`), stretched to every height and width in `sizes` that its rows and columns
divide, at every place in the window on a grid of `step` pixels. A feature is computed from
the corners of its rectangles (`Feature.points`: 6 lookups for two rectangles, 8 for three,
9 for four) on the window standardized to mean 0 and deviation 1, as Viola and Jones
normalize the variance. The head slides the window over the image at every scale of
`scales` (the features scaled with it, never the image: the tables are made once), by
`stride` pixels times the scale; which features it evaluates, with which thresholds, is what
boosting chose (`cascade` in the train section, netspec.tasks.cascade): a window passes a
stage when its stumps' weighted votes reach the stage's threshold, and stage k runs only on
the windows every stage before it passed. The survivors are boxes of `box` (the object's
height x width in the window, centred) scored 0.5 at the last stage's threshold up to 1
when every last-stage feature votes for them; the exported graph keeps the `keep` best
after suppressing those overlapping a better one by more than `iou`, as ``keep x 6`` rows
read by the runtime's `ssd` decoder (x1, y1, x2, y2, score, class 0; class -1 is empty).

The detector is binary, as Viola and Jones' is: one class, "object" against background.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, model_validator

from netspec.artifact import Decoding
from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    RF,
    Cost,
    Matrix,
    OpDef,
    Pair,
    Pos,
    ShapeError,
    numel,
    register,
    rf_whole,
    spatial,
)
from netspec.text import fmt_shape

Fraction = Annotated[float, Field(ge=0, le=1)]
Scale = Annotated[float, Field(gt=0, le=16, allow_inf_nan=False)]
MAX_KEEP = 1000  # rows the exported graph keeps (netspec.ops.ssd's bound)
MAX_POOL = 200_000  # features a pool may hold (boosting reads every one on every window)
TABLES = 2  # integral's maps: the sums and the sums of squares
LOOKUPS = 4  # a rectangle's sum from a summed-area table
STEP_LOOKUPS = 9  # the most corners a feature reads (four rectangles); fewer are padded
DEVIATION = 1e-2  # the least deviation a window is divided by (a flat window stays finite)


class IntegralParams(OpParams):
    """`integral`: no parameters."""


def _integral_shape(p: IntegralParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "integral")
    if c != 1:
        raise ShapeError(
            f"integral sums one channel, got {fmt_shape(ins[0])}",
            hint="give it a grey image, e.g. image: 1x128x128",
        )
    return (TABLES, h if isinstance(h, str) else h + 1, w if isinstance(w, str) else w + 1)


def _integral_cost(p: IntegralParams, ins: Sequence[Shape], out: Shape) -> Cost:
    positions = numel(out[1:])
    return Cost(macs=None if positions is None else positions * 3)  # a square, two sums


class CascadeParams(OpParams):
    """`cascade window=24 haar=[k1, k2] sizes=[6, 12] [step=2] [scales=[1]] [stride=2]
    [box=HxW] [keep=20] [iou=0.3] [score=0.5]`."""

    window: Pos
    haar: Annotated[tuple[Matrix, ...], Field(min_length=1, max_length=64)]
    sizes: Annotated[tuple[Pos, ...], Field(min_length=1, max_length=64)]
    step: Pos = 1
    scales: Annotated[tuple[Scale, ...], Field(min_length=1, max_length=32)] = (1.0,)
    stride: Pos = 1
    box: Pair | None = None  # the object's height x width in the window; None: the window
    keep: Annotated[int, Field(gt=0, le=MAX_KEEP, strict=True)] = 20
    iou: Fraction = 0.3
    score: Annotated[float, Field(ge=0.5, le=1)] = 0.5

    @model_validator(mode="after")
    def _blocks(self) -> CascadeParams:
        for k, kernel in enumerate(self.haar, 1):
            if not kernel or any(len(row) != len(kernel[0]) for row in kernel):
                raise ValueError(f"haar kernel {k} must be a rectangular matrix")
            if any(v not in (-1, 1) for row in kernel for v in row):
                raise ValueError(f"haar kernel {k} must hold +1 and -1 only (a Haar-like box)")
        return self

    @property
    def object_box(self) -> tuple[int, int]:
        """The object's (height, width) in the window."""
        return self.box if self.box is not None else (self.window, self.window)


@dataclass(frozen=True)
class Feature:
    """One feature of a pool: its kernel's index in `haar`, its box (top, left, height,
    width) in the window, its corners (dy, dx, weight) on the summed-area table, and its
    mass, the sum of its kernel's weights over its pixels (what the window's mean adds)."""

    kind: int
    top: int
    left: int
    height: int
    width: int
    points: tuple[tuple[int, int, float], ...]
    mass: float


def _corners(kernel: Matrix, height: int, width: int) -> tuple[tuple[int, int, float], ...]:
    """The weights of a kernel stretched to height x width on the corners of its blocks:
    the kernel's second difference, which sums it from a summed-area table."""
    rows, cols = len(kernel), len(kernel[0])

    def at(a: int, b: int) -> float:
        return kernel[a][b] if 0 <= a < rows and 0 <= b < cols else 0.0

    out = []
    for a in range(rows + 1):
        for b in range(cols + 1):
            weight = at(a, b) - at(a - 1, b) - at(a, b - 1) + at(a - 1, b - 1)
            if weight:
                out.append((a * height // rows, b * width // cols, float(weight)))
    return tuple(out)


def pool(p: CascadeParams) -> tuple[Feature, ...]:
    """Every feature of the head's pool, kernel by kernel, size by size (height, then
    width), place by place (row-major)."""
    out = []
    for kind, kernel in enumerate(p.haar):
        rows, cols = len(kernel), len(kernel[0])
        total = sum(sum(row) for row in kernel)
        for h in sorted(set(p.sizes)):
            for w in sorted(set(p.sizes)):
                if h % rows or w % cols or h > p.window or w > p.window:
                    continue
                points = _corners(kernel, h, w)
                mass = total * (h // rows) * (w // cols)
                for top in range(0, p.window - h + 1, p.step):
                    for left in range(0, p.window - w + 1, p.step):
                        out.append(Feature(kind, top, left, h, w, points, float(mass)))
    return tuple(out)


def pool_size(p: CascadeParams) -> int:
    """How many features the pool holds, without making them."""
    count = 0
    for kernel in p.haar:
        rows, cols = len(kernel), len(kernel[0])
        for h in set(p.sizes):
            for w in set(p.sizes):
                if h % rows or w % cols or h > p.window or w > p.window:
                    continue
                count += ((p.window - h) // p.step + 1) * ((p.window - w) // p.step + 1)
    return count


def _check_pool(p: CascadeParams) -> None:
    if (largest := max(p.sizes)) > p.window:
        raise ShapeError(
            f"a Haar feature of {largest} pixels is larger than the window ({p.window})",
            hint=f"give sizes of at most {p.window}, or a larger window",
        )
    for k, kernel in enumerate(p.haar, 1):
        rows, cols = len(kernel), len(kernel[0])
        if max(rows, cols) > p.window:
            raise ShapeError(
                f"haar kernel {k} ({rows}x{cols}) is larger than the window ({p.window})",
                hint="give a kernel of one cell per rectangle, e.g. [-1 1]",
            )
        if not any(h % rows == 0 for h in p.sizes) or not any(w % cols == 0 for w in p.sizes):
            raise ShapeError(
                f"haar kernel {k} ({rows}x{cols}) divides none of the sizes "
                f"{', '.join(map(str, p.sizes))}",
                hint=f"add a size that is a multiple of {rows} and one of {cols}",
            )
    if (count := pool_size(p)) > MAX_POOL:
        raise ShapeError(
            f"the pool holds {count:,} features; boosting reads at most {MAX_POOL:,}",
            hint="give fewer sizes or a larger step",
        )


def window_side(window: int, scale: float) -> int:
    """The side in pixels of a window of ``window`` pixels at ``scale``."""
    return max(1, round(window * scale))


def window_corners(
    image: tuple[int, int], window: int, scale: float, stride: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The tops and lefts of the windows at ``scale`` over an image of (H, W), ``stride``
    times the scale apart (every pair is a window)."""
    side, step = window_side(window, scale), max(1, round(stride * scale))
    return tuple(range(0, image[0] - side + 1, step)), tuple(range(0, image[1] - side + 1, step))


@dataclass(frozen=True)
class Scan:
    """Where a cascade looks: at each scale, the window's side and stride in pixels and its
    top-left corners over an image of (H, W)."""

    image: tuple[int, int]
    window: int
    scales: tuple[float, ...]
    stride: int

    def side(self, scale: float) -> int:
        return window_side(self.window, scale)

    def corners(self, scale: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """The windows' tops and lefts at this scale (every pair is a window)."""
        return window_corners(self.image, self.window, scale, self.stride)

    def count(self) -> int:
        """Windows over every scale."""
        return sum(len(t) * len(le) for t, le in (self.corners(s) for s in self.scales))


def scan_of(p: CascadeParams, tables: Shape) -> Scan:
    """The scan of a cascade reading summed-area tables of this shape (checked)."""
    c, h, w = spatial(tables, "cascade")
    if c != TABLES or not (isinstance(h, int) and isinstance(w, int)):
        raise ShapeError(
            f"cascade reads the summed-area tables of an image of known size (2 x (H+1) x "
            f"(W+1)), got {fmt_shape(tables)}",
            hint="give it an integral image, e.g. image | integral | cascade ...",
        )
    scan = Scan((h - 1, w - 1), p.window, p.scales, p.stride)
    for scale in p.scales:
        if scan.side(scale) > min(h - 1, w - 1):
            raise ShapeError(
                f"at scale {scale:g} the window ({scan.side(scale)} pixels) is larger than the "
                f"image ({h - 1}x{w - 1})",
                hint="give smaller scales or a larger image",
            )
    return scan


def _cascade_shape(p: CascadeParams, ins: Sequence[Shape]) -> Shape:
    _check_pool(p)
    scan_of(p, ins[0])
    return (p.keep, 6)


def _cascade_cost(p: CascadeParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """Each window's mean and variance (8 lookups); the stages' features are chosen by
    training, so their cost is the trained file's (each at most 9 lookups)."""
    return Cost(macs=scan_of(p, ins[0]).count() * 2 * LOOKUPS)


def _decoding(params: Any, shape: Shape, rf: RF, image: Shape) -> Decoding | None:
    """The file's rows, read by the runtime's `ssd` decoder: one class, kept in the graph
    from the windows that pass every stage (a score of 0.5 or more)."""
    h, w = image[-2], image[-1]
    if not (isinstance(params, CascadeParams) and isinstance(h, int) and isinstance(w, int)):
        return None
    return Decoding(
        "ssd",
        {
            "classes": 1,
            "keep": params.keep,
            "image": (h, w),
            "score": params.score,
            "floor": 0.5,
            "iou": params.iou,
        },
    )


register(
    OpDef(
        name="integral",
        params=IntegralParams,
        shape=_integral_shape,
        cost=_integral_cost,
        rf=rf_whole,  # each sum reads every pixel above and left of it
        doc="The summed-area tables of a grey image: map 0 the sum of the pixels above and "
        "left of each position, map 1 that of their squares, a row and column of zeros first.",
    )
)

register(
    OpDef(
        name="cascade",
        params=CascadeParams,
        shape=_cascade_shape,
        cost=_cascade_cost,
        rf=rf_whole,  # windows of several scales over the whole image
        output="detections",
        head=True,
        decoding=_decoding,
        doc="A Viola-Jones cascade over summed-area tables: a pool of Haar-like features "
        "(`haar` kernels at `sizes`, every `step` pixels in a `window`), stages of boosted "
        "stumps chosen by training, at every window position of every scale.",
    )
)
