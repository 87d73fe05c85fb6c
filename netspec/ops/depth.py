"""Moving values between depth and space: `pixel_shuffle r` (depth to space, ESPCN's
sub-pixel convolution) and `pixel_unshuffle r` (space to depth), as PyTorch's
nn.PixelShuffle and nn.PixelUnshuffle.

`pixel_shuffle r` makes C·r² x H x W into C x rH x rW: output unit (c, y, x) is input unit
(c·r² + (y mod r)·r + x mod r, y // r, x // r). Each output position reads one input
position, y // r: the units of one map read as after a nearest `upsample r`, and the
receptive field is that one (the jump divided by r). `pixel_unshuffle r` is its inverse:
the r x r block at each output position becomes r² channels, so an output position reads
an r x r window with stride r, and its field is that window's (exact). Neither computes
anything: no parameters, no multiply-adds.
"""

from __future__ import annotations

from collections.abc import Sequence

from netspec.ir import Dim, OpParams, Shape
from netspec.ops.registry import (
    RF,
    OpDef,
    Pos,
    ShapeError,
    register,
    spatial,
    window_rf,
)
from netspec.ops.resampling import Interpolation, stretched, upsampled_rf
from netspec.text import fmt_shape


class FactorParams(OpParams):
    """`pixel_shuffle 3`: the upscale (or, unshuffling, downscale) factor r."""

    factor: Pos


def _shuffle_shape(p: FactorParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "pixel_shuffle")
    r = p.factor
    if not isinstance(c, int):
        raise ShapeError("pixel_shuffle needs a number of feature maps")
    if c % (r * r):
        near = sorted({max(c // (r * r), 1) * r * r, -(-c // (r * r)) * r * r})
        raise ShapeError(
            f"pixel_shuffle {r} makes each {r * r} feature maps (r x r = {r}x{r}) into one "
            f"map {r} times larger: it needs a multiple of {r * r} maps, got {c}",
            hint=f"give the layer before {' or '.join(map(str, near))} maps "
            f"(ESPCN ends in conv C*{r}*{r} before pixel_shuffle {r})",
        )
    return (c // (r * r), stretched(h, r), stretched(w, r))


def _shuffle_rf(p: FactorParams, rfs: Sequence[RF]) -> RF:
    return upsampled_rf(rfs[0], (p.factor, p.factor), Interpolation())


register(
    OpDef(
        name="pixel_shuffle",
        params=FactorParams,
        positional=("factor",),
        shape=_shuffle_shape,
        rf=_shuffle_rf,
        output="pass",
        refusal="each output position reads a different channel by its place in an r x r "
        "block, not one window the same way at every position",
        doc="Depth to space (nn.PixelShuffle, ESPCN's sub-pixel convolution): each r*r "
        "feature maps become one map r times larger, C*r*r x H x W to C x rH x rW.",
    )
)


def _divided(size: Dim, r: int) -> Dim:
    """`size // r`, kept symbolic for a symbolic size (`H//2`)."""
    if isinstance(size, int):
        return size // r
    return f"{size if size.isidentifier() else f'({size})'}//{r}"


def _unshuffle_shape(p: FactorParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "pixel_unshuffle")
    r = p.factor
    if not isinstance(c, int):
        raise ShapeError("pixel_unshuffle needs a number of feature maps")
    if any(isinstance(n, int) and n % r for n in (h, w)):
        sizes = [int(n) if isinstance(n, int) else r for n in (h, w)]
        below = fmt_shape(tuple(max(n // r, 1) * r for n in sizes))
        above = fmt_shape(tuple(-(-n // r) * r for n in sizes))
        raise ShapeError(
            f"pixel_unshuffle {r} makes each {r}x{r} block of a map into {r * r} maps: it "
            f"needs sizes that are multiples of {r}, got {fmt_shape((h, w))}",
            hint=f"crop to {below} or pad to {above} first",
        )
    return (c * r * r, _divided(h, r), _divided(w, r))


def _unshuffle_rf(p: FactorParams, rfs: Sequence[RF]) -> RF:
    r = p.factor
    return window_rf(rfs[0], (r, r), (r, r), ((0, 0), (0, 0)))


register(
    OpDef(
        name="pixel_unshuffle",
        params=FactorParams,
        positional=("factor",),
        shape=_unshuffle_shape,
        rf=_unshuffle_rf,
        refusal="it needs map sizes that are multiples of its factor, which an image of "
        "any size does not have",
        doc="Space to depth (nn.PixelUnshuffle), the inverse of pixel_shuffle: each r x r "
        "block becomes r*r feature maps, C x H x W to C*r*r x H/r x W/r.",
    )
)
