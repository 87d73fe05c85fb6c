"""The two steps of a histogram of oriented gradients (HOG, Dalal and Triggs 2005) that no
other operation says: `orientation_bins` and `block_norm`.

HOG is a fixed pipeline, and netspec writes it as one (specs/hog_features.net): the
gradients are fixed convolutions (`conv fixed=[dx]` with `dx = [-1 0 1]`, padded back with
zeros, so that the border's gradient is 0 as in scikit-image), `orientation_bins 9` turns
the two gradient maps into one map of gradient magnitude per orientation bin, `avgpool 8x8`
sums each cell's votes (over its pixel count) and `block_norm 2x2` normalizes each block of
2x2 cells, a block at every cell (stride one cell). Nothing is learned.

`orientation_bins B` reads 2 maps, the horizontal gradient gx (along W) and then the
vertical gy (along H), and outputs B maps: at each position, bin k holds the gradient
magnitude sqrt(gx² + gy²) where the unsigned orientation atan2(gy, gx) mod 180° lies in
[180k/B, 180(k+1)/B) degrees, and 0 elsewhere: hard binning, as `skimage.feature.hog`
does. Each position reads its own two values (`locality` "pointwise"). Its `orientations`
fact gives each bin's centre angle, which `netspec show` draws as HOG's glyphs.

`block_norm KxK` reads C maps of cells and outputs C·K·K maps over the (H-K+1) x (W-K+1)
blocks: a block's channels are its cells' histograms, cell row by cell row, each cell's C
values in order (scikit-image's (block row, block column, orientation) with C = B), each
block normalized on its own: `l2hys` (the default, Dalal and Triggs' L2-Hys) divides by
sqrt(sum v² + eps²), clips at 0.2 and normalizes again; `l2` stops after the first
division; `l1` divides by sum |v| + eps; `l1sqrt` takes the square root of that.
MACs: `orientation_bins` two per output (its bin's boundary test) and two per position (the
magnitude); `block_norm` two per output (the sum it is divided by, the division), four
with `l2hys`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    RF,
    Cost,
    OpDef,
    Pair,
    ShapeError,
    macs_of,
    numel,
    register,
    shifted,
    spatial,
    window_rf,
)
from netspec.text import fmt_shape

MAX_BINS = 360
GRADIENTS = 2  # orientation_bins' input: gx, then gy
HYSTERESIS = 0.2  # L2-Hys' clip (Dalal and Triggs; scikit-image)
BlockMethod = Literal["l2hys", "l2", "l1", "l1sqrt"]


class OrientationBinsParams(OpParams):
    """`orientation_bins 9`: the number of bins over 0..180 degrees."""

    bins: Annotated[int, Field(gt=0, le=MAX_BINS, strict=True)]


class BlockNormParams(OpParams):
    """`block_norm 2x2 [method=l2hys] [eps=1e-5]`: cells per block and the normalization."""

    block: Pair
    method: BlockMethod = "l2hys"
    eps: Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)] = 1e-5


def _bins_shape(p: OrientationBinsParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "orientation_bins")
    if c != GRADIENTS:
        raise ShapeError(
            f"orientation_bins reads 2 gradient maps (gx, then gy), got {fmt_shape(ins[0])}",
            hint="give it the horizontal and the vertical gradient, e.g. "
            "concat(gx, gy) | orientation_bins 9",
        )
    return (p.bins, h, w)


def _bin_centres(p: OrientationBinsParams) -> tuple[float, ...]:
    """Each bin's centre, degrees: bin k holds [180k/B, 180(k+1)/B)."""
    return tuple(180.0 * (k + 0.5) / p.bins for k in range(p.bins))


def _bins_cost(p: OrientationBinsParams, ins: Sequence[Shape], out: Shape) -> Cost:
    positions = numel(out[1:])
    return Cost(macs=None if positions is None else positions * 2 * (p.bins + 1))


def _blocks_shape(p: BlockNormParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "block_norm")
    if not isinstance(c, int):
        raise ShapeError(f"block_norm needs a numeric channel count, got {fmt_shape(ins[0])}")
    kh, kw = p.block
    if (isinstance(h, int) and h < kh) or (isinstance(w, int) and w < kw):
        raise ShapeError(
            f"a block of {kh}x{kw} cells is larger than the grid of cells ({h}x{w})",
            hint="give a larger image, smaller cells (the pooling before) or a smaller block",
        )
    return (c * kh * kw, shifted(h, 1 - kh), shifted(w, 1 - kw))


def _blocks_rf(p: BlockNormParams, rfs: Sequence[RF]) -> RF:
    """A window of K cells at a stride of one cell."""
    return window_rf(rfs[0], p.block, (1, 1), ((0, 0), (0, 0)))


def _blocks_cost(p: BlockNormParams, ins: Sequence[Shape], out: Shape) -> Cost:
    return Cost(macs=macs_of(out, 4 if p.method == "l2hys" else 2))


register(
    OpDef(
        name="orientation_bins",
        params=OrientationBinsParams,
        positional=("bins",),
        shape=_bins_shape,
        cost=_bins_cost,
        locality="pointwise",
        orientations=_bin_centres,
        doc="HOG's orientation binning: 2 gradient maps (gx, gy) to `bins` maps, each the "
        "gradient magnitude where the unsigned orientation falls in its bin of 180/bins "
        "degrees, 0 elsewhere.",
    )
)

register(
    OpDef(
        name="block_norm",
        params=BlockNormParams,
        positional=("block",),
        shape=_blocks_shape,
        rf=_blocks_rf,
        cost=_blocks_cost,
        locality="sliding",
        doc="HOG's block normalization: each block of KxK cells (a block at every cell) as "
        "its cells' C values, normalized by `method` (l2hys, l2, l1, l1sqrt): C*K*K maps.",
    )
)
