"""Operations that move values without computing on them: `reshape`, `permute`,
`channel_shuffle`, `pad` and `crop`.

Their receptive-field rules follow where the values go. `pad` and `crop` move the first
unit (its centre shifts by the padding or the crop's offset); `channel_shuffle` changes
nothing spatial. After a `reshape` or `permute` that moves values between the channel
axis and the spatial ones, positions no longer correspond to windows of the input: the
receptive field becomes the whole input (`all`, the bound that holds), as after a dense
stage. A reshape to a vector (as `flatten`, which keeps its input's receptive field) or to
the same shape keeps it, and a permute that swaps H and W swaps it with them. Applied to
the input itself, before anything spatial, either starts the receptive field afresh in
the new axes (a flat `784` reshaped to 1x28x28 counts pixels of the 28x28 image).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, model_validator

from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    RF,
    NonNeg,
    OpDef,
    Pair,
    Pos,
    ShapeError,
    maps_or_signal,
    numel,
    one_number,
    register,
    rf_whole,
    shifted,
)
from netspec.text import fmt_shape


def _tuple(v: Any) -> Any:
    """One number as a one-element tuple: `reshape 490`, `pad 1`."""
    return (v,) if isinstance(v, int) and not isinstance(v, bool) else v


def _count(n: int) -> str:
    return f"{n:,} value{'' if n == 1 else 's'}"


# ---- reshape ---------------------------------------------------------------------------


class ReshapeParams(OpParams):
    """`reshape 10x7x7`: the per-sample shape to give the values (one `-1` is inferred)."""

    shape: Annotated[tuple[int, ...], BeforeValidator(_tuple)]

    @model_validator(mode="after")
    def _sizes(self) -> ReshapeParams:
        if any(d == 0 or d < -1 for d in self.shape):
            raise ValueError("reshape's sizes must be positive, or -1 for the one to infer")
        if self.shape.count(-1) > 1:
            raise ValueError("reshape may infer one size (-1), not several")
        return self


def _reshape_shape(p: ReshapeParams, ins: Sequence[Shape]) -> Shape:
    have = numel(ins[0])
    if have is None:
        raise ShapeError(
            f"reshape needs a fixed input size, got {fmt_shape(ins[0])}",
            hint="bind the symbolic size with --set",
        )
    known = math.prod(d for d in p.shape if d != -1)
    want = fmt_shape(tuple("-1" if d == -1 else d for d in p.shape))
    if -1 in p.shape:
        if have % known:
            raise ShapeError(
                f"cannot reshape {fmt_shape(ins[0])} ({_count(have)}) to {want}: "
                f"{_count(have)} is not a multiple of {known:,}",
                hint="the sizes given must divide the number of values",
            )
        return tuple(have // known if d == -1 else d for d in p.shape)
    if known != have:
        raise ShapeError(
            f"cannot reshape {fmt_shape(ins[0])} ({_count(have)}) to {want} ({_count(known)})",
            hint="a reshape keeps every value: the sizes must multiply to the same count "
            "(one size may be -1, inferred)",
        )
    return p.shape


def _afresh(rf: RF, out: Shape) -> RF | None:
    """Where each value still is one input value (nothing spatial before it), a reshape or
    permute starts the receptive field again in the new shape's axes: a flat `784` input
    reshaped to 1x28x28, or an H x W x C image permuted to C x H x W."""
    if rf.whole or rf != RF(line=rf.line):
        return None
    return RF(line=len(out) == 2)


def _reshape_rf(p: ReshapeParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    out = _reshape_shape(p, ins)
    if len(out) == 1 or out == ins[0]:
        return rfs[0]
    return _afresh(rfs[0], out) or rf_whole(p, rfs)


register(
    OpDef(
        name="reshape",
        params=ReshapeParams,
        positional=("shape",),
        shape=_reshape_shape,
        sized_rf=_reshape_rf,
        output="pass",
        passes_through=True,
        doc="Gives each sample's values a new shape with the same count (`reshape 10x7x7`; "
        "one size may be -1, inferred).",
    )
)


# ---- permute ---------------------------------------------------------------------------


class PermuteParams(OpParams):
    """`permute 1 2 0`: output axis i is input axis order[i] (per sample, 0 = channels)."""

    order: Annotated[tuple[NonNeg, ...], BeforeValidator(_tuple)]


def _permute_shape(p: PermuteParams, ins: Sequence[Shape]) -> Shape:
    axes = len(ins[0])
    if sorted(p.order) != list(range(axes)):
        listed = " ".join(str(i) for i in range(axes))
        raise ShapeError(
            f"permute {' '.join(map(str, p.order))} is not an order of the input's {axes} "
            f"axes ({fmt_shape(ins[0])}: {listed})",
            hint=f"name each of {listed} once: axis 0 is the channels (the batch is not counted)",
        )
    return tuple(ins[0][i] for i in p.order)


def _flip(pair: tuple[float, float]) -> tuple[float, float]:
    return (pair[1], pair[0])


def _permute_rf(p: PermuteParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    rf = rfs[0]
    if p.order == tuple(range(len(p.order))) or rf.whole:
        return rf
    if p.order == (0, 2, 1) and not rf.line:  # H and W swap places
        return replace(rf, size=_flip(rf.size), jump=_flip(rf.jump), start=_flip(rf.start))
    return _afresh(rf, _permute_shape(p, ins)) or rf_whole(p, rfs)


register(
    OpDef(
        name="permute",
        params=PermuteParams,
        positional=("order",),
        variadic=True,
        shape=_permute_shape,
        sized_rf=_permute_rf,
        output="pass",
        doc="Reorders each sample's axes (0 = channels): `permute 1 2 0` makes C x H x W "
        "into H x W x C.",
    )
)


# ---- channel_shuffle -------------------------------------------------------------------


class ChannelShuffleParams(OpParams):
    groups: Pos


def _shuffle_shape(p: ChannelShuffleParams, ins: Sequence[Shape]) -> Shape:
    c, _ = maps_or_signal(ins[0], "channel_shuffle")
    if not isinstance(c, int) or c % p.groups:
        raise ShapeError(
            f"channel_shuffle {p.groups} needs a number of feature maps that {p.groups} "
            f"divides, got {c}",
            hint="shuffle with as many groups as the grouped convolution before it has",
        )
    return ins[0]


register(
    OpDef(
        name="channel_shuffle",
        params=ChannelShuffleParams,
        positional=("groups",),
        shape=_shuffle_shape,
        output="pass",
        locality="pointwise",
        doc="ShuffleNet's channel shuffle: the maps, seen as G groups of C/G, are "
        "interleaved (map g*C/G + i goes to i*G + g).",
    )
)


# ---- pad -------------------------------------------------------------------------------


class PadParams(OpParams):
    """`pad 1` (every side), `pad 1 2` (H, W), `pad 1 2 3 4` (top bottom left right);
    on a 1-D signal `pad 1` or `pad 1 2` (left right)."""

    widths: Annotated[tuple[NonNeg, ...], BeforeValidator(_tuple)]
    mode: Literal["constant", "reflect", "replicate"] = "constant"
    value: float = 0.0

    @model_validator(mode="after")
    def _counts(self) -> PadParams:
        if len(self.widths) not in (1, 2, 4):
            raise ValueError(
                f"pad takes 1, 2 or 4 numbers (all sides; H W; top bottom left right), "
                f"got {len(self.widths)}"
            )
        if self.value != 0 and self.mode != "constant":
            raise ValueError("value= is the constant that mode=constant pads with")
        return self

    def sides(self, axes: int) -> tuple[tuple[int, int], ...]:
        """(low, high) padding along each spatial axis: (H, W), or the signal's (L,)."""
        w = self.widths
        if axes == 1:
            if len(w) == 4:
                raise ShapeError(
                    "a 1-D signal is padded with 1 or 2 numbers (left right), got 4",
                    hint="'pad 2' pads both ends; 'pad 1 3' pads 1 before and 3 after",
                )
            return ((w[0], w[-1]),)
        if len(w) == 4:
            return ((w[0], w[1]), (w[2], w[3]))
        return ((w[0], w[0]), (w[-1], w[-1]))


def _pad_shape(p: PadParams, ins: Sequence[Shape]) -> Shape:
    c, dims = maps_or_signal(ins[0], "pad")
    sides = p.sides(len(dims))
    axis_names = ("L",) if len(dims) == 1 else ("H", "W")
    for size, (low, high), axis in zip(dims, sides, axis_names, strict=True):
        if p.mode == "reflect" and isinstance(size, int) and max(low, high) >= size:
            raise ShapeError(
                f"reflect padding of {max(low, high)} needs more than {max(low, high)} "
                f"units along {axis}, and the input has {size}",
                hint="reflection mirrors the input without repeating its edge: pad less, "
                "or use mode=replicate",
            )
    return (c, *(shifted(d, lo + hi) for d, (lo, hi) in zip(dims, sides, strict=True)))


def _pad_rf(p: PadParams, rfs: Sequence[RF]) -> RF:
    """The first unit is now `low` units before the input's first: its centre moves back."""
    rf = rfs[0]
    if rf.whole:
        return rf
    sides = p.sides(len(rf.axes))
    start = list(rf.start)
    for axis, (low, _) in zip(rf.axes, sides, strict=True):
        start[axis] -= low * rf.jump[axis]
    return replace(rf, start=(start[0], start[1]))


register(
    OpDef(
        name="pad",
        params=PadParams,
        positional=("widths",),
        variadic=True,
        shape=_pad_shape,
        rf=_pad_rf,
        output="pass",
        doc="Pads each feature map: `pad 1` every side, `pad 1 2` (H, W), `pad 1 2 3 4` "
        "(top bottom left right); `mode=constant` (with `value=`), `reflect` or `replicate`.",
    )
)


# ---- crop ------------------------------------------------------------------------------


class CropParams(OpParams):
    size: Pair


def crop_box(p: CropParams, shape: Shape) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(offsets, sizes) of the centred window along each spatial axis; offset (n - m) // 2."""
    _, dims = maps_or_signal(shape, "crop")
    sizes = (one_number(p.size, "size"),) if len(dims) == 1 else p.size
    if not all(isinstance(d, int) for d in dims):
        raise ShapeError(
            f"crop needs a numeric input size, got {fmt_shape(shape)}",
            hint="bind the symbolic size with --set",
        )
    if any(m > int(n) for n, m in zip(dims, sizes, strict=True)):
        raise ShapeError(
            f"cannot crop {fmt_shape(shape)} to {fmt_shape(sizes)}: the crop is larger "
            "than the input",
            hint="a crop keeps a centred window of the input; pad first to grow it",
        )
    return tuple((int(n) - m) // 2 for n, m in zip(dims, sizes, strict=True)), tuple(sizes)


def _crop_shape(p: CropParams, ins: Sequence[Shape]) -> Shape:
    return (ins[0][0], *crop_box(p, ins[0])[1])


def _crop_rf(p: CropParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    """The first unit kept is `offset` units in: its centre moves forward by that much."""
    rf = rfs[0]
    if rf.whole:
        return rf
    offsets, _ = crop_box(p, ins[0])
    start = list(rf.start)
    for axis, off in zip(rf.axes, offsets, strict=True):
        start[axis] += off * rf.jump[axis]
    return replace(rf, start=(start[0], start[1]))


register(
    OpDef(
        name="crop",
        params=CropParams,
        positional=("size",),
        shape=_crop_shape,
        sized_rf=_crop_rf,
        output="pass",
        doc="Keeps a centred window of each feature map (`crop 388x388`, U-Net's crop before "
        "a concat); the offset is (input - size) // 2 on each axis.",
    )
)
