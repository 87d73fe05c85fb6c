"""Operations that enlarge feature maps: `upsample` (nearest or bilinear, by whole factors
or `to` an output size), `resize(x, like)` (x at another tensor's H x W: FPN's top-down
path), and `deconv`, the transposed convolution (decoders, U-Net's up-convolutions).

All divide the receptive field's jump: s output units stand where one input unit stood.
Those units do not read evenly spaced input units, so no size/jump/start is exact: the
size is that of the smallest window, centred where the affine start and jump put each unit,
that holds everything every unit reads (`netspec.ops.resampling`, for `deconv` below).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from pydantic import model_validator

from netspec.ir import Dim, OpParams, Shape
from netspec.ops.registry import (
    RF,
    Cost,
    OpDef,
    Padding,
    PadPair,
    Pair,
    Pos,
    ShapeError,
    numel,
    register,
    spatial,
)
from netspec.ops.resampling import (
    Interpolation,
    interpolation_cost,
    resized_rf,
    stretched,
    upsampled_rf,
)
from netspec.text import fmt_shape

# ---- upsample ------------------------------------------------------------------------------


class UpsampleParams(Interpolation):
    """`upsample 2` or `upsample 2x3`: whole factors along (H, W); `upsample to 64x64`: the
    output size (`scale` is then the word `to`, as `avgpool to 7x7` has it)."""

    scale: Pair | Literal["to"] | None = None
    to: Pair | None = None

    @model_validator(mode="before")
    @classmethod
    def _like_is_resize(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("scale") == "like":
            raise ValueError(
                "upsample takes a factor or 'to' a size, not another tensor\n"
                "to take another tensor's H x W, write resize(x, other), "
                "e.g. add(lateral, resize(top, lateral))"
            )
        return data

    @model_validator(mode="after")
    def _factor_or_size(self) -> UpsampleParams:
        if self.to is not None and self.scale not in (None, "to"):
            raise ValueError(
                "upsample takes a factor or 'to' an output size, not both: "
                "e.g. 'upsample 2' or 'upsample to 64x64'"
            )
        if self.to is None and self.scale == "to":
            raise ValueError("'to' needs the output size, e.g. 'upsample to 64x64'")
        if self.to is None and self.scale is None:
            raise ValueError(
                "upsample needs a factor or 'to' an output size, e.g. 'upsample 2' or "
                "'upsample to 64x64'"
            )
        return self

    @property
    def factors(self) -> tuple[int, int] | None:
        """The whole factors along (H, W); None for `upsample to` a size."""
        return self.scale if isinstance(self.scale, tuple) else None


def _upsample_shape(p: UpsampleParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "upsample")
    if p.factors is None:
        assert p.to is not None
        return (c, *p.to)
    return (c, stretched(h, p.factors[0]), stretched(w, p.factors[1]))


def _upsample_rf(p: UpsampleParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    """By whole factors, `upsampled_rf`; `to` a size, `resized_rf` from the input's."""
    if p.factors is None:
        assert p.to is not None
        return resized_rf(rfs[0], p, ins[0][1:], p.to)
    return upsampled_rf(rfs[0], p.factors, p)


register(
    OpDef(
        name="upsample",
        params=UpsampleParams,
        positional=("scale", "to"),
        shape=_upsample_shape,
        sized_rf=_upsample_rf,
        cost=interpolation_cost,
        output="pass",
        doc="Upsampling by a whole factor per axis: each feature map grows to sH x sW, "
        "by copying the nearest unit (`mode=nearest`) or by bilinear interpolation "
        "(`mode=bilinear`, `align_corners=` as in PyTorch's nn.Upsample); "
        "`upsample to 64x64` resizes to an output size.",
    )
)


# ---- resize: to another tensor's size ------------------------------------------------------


class ResizeParams(Interpolation):
    """`resize(x, like)`: `mode=` and `align_corners=` by name, the tensors by position."""


def _resize_shape(p: ResizeParams, ins: Sequence[Shape]) -> Shape:
    c, _, _ = spatial(ins[0], "resize")
    if len(ins[1]) != 3:
        raise ShapeError(
            f"resize(x, like) takes like's H x W: like must be feature maps (C x H x W), "
            f"got {fmt_shape(ins[1])}",
            hint="name the feature maps whose size x should take",
        )
    return (c, ins[1][1], ins[1][2])


def _resize_rf(p: ResizeParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    """x's field, resized to like's H x W (`resized_rf`): like gives a size, not values."""
    return resized_rf(rfs[0], p, ins[0][1:], ins[1][1:])


register(
    OpDef(
        name="resize",
        params=ResizeParams,
        shape=_resize_shape,
        arity=2,
        sized_rf=_resize_rf,
        cost=interpolation_cost,
        output="pass",
        doc="`resize(x, like)`: x's feature maps interpolated to like's H x W (its channels "
        "kept), as F.interpolate(x, size=like.shape[-2:]) with `mode=` and `align_corners=`: "
        "FPN's top-down path, equal to like's size even when that is symbolic.",
    )
)


# ---- deconv: the transposed convolution ---------------------------------------------------


class DeconvParams(OpParams):
    """`deconv C KxK stride=S pad=P output_pad=Q bias=true`, as nn.ConvTranspose2d."""

    channels: Pos
    kernel: Pair
    stride: Pair = (1, 1)
    pad: Padding = (0, 0)
    output_pad: PadPair = (0, 0)
    bias: bool = True

    @model_validator(mode="after")
    def _pad_and_output_pad(self) -> DeconvParams:
        if self.pad == "same":
            raise ValueError(_no_same(self.kernel[0], self.stride[0]))
        if any(q >= s for q, s in zip(self.output_pad, self.stride, strict=True)):
            raise ValueError(
                f"output_pad= must be smaller than the stride (output_pad="
                f"{self.output_pad[0]}x{self.output_pad[1]}, stride="
                f"{self.stride[0]}x{self.stride[1]}): it only picks among the sizes a "
                "stride allows"
            )
        return self

    @property
    def pads(self) -> tuple[int, int]:
        """The padding per axis: `valid` is none (`same` is refused above)."""
        return (0, 0) if isinstance(self.pad, str) else self.pad


def _no_same(k: int, s: int) -> str:
    """Why `pad=same` has no meaning here, and the numbers that make stride*H."""
    why = "deconv has no pad=same: it makes (H-1)*stride - 2*pad + kernel + output_pad"
    pad, extra, size = -(-(k - s) // 2), (k - s) % 2, "H" if s == 1 else f"{s}*H"
    if k < s or extra >= s:
        return f"{why}; no pad= gives {size} with a {k}-wide kernel"
    return f"{why}; pad={pad} output_pad={extra} gives {size}"


def _deconv_length(n: Dim, k: int, s: int, pad: int, extra: int) -> Dim:
    """(n - 1)·s - 2·pad + k + output_pad, the inverse of a convolution's length."""
    out = stretched(n, s, k - 2 * pad + extra - s)
    if isinstance(out, int) and out < 1:
        raise ShapeError(
            f"the padding ({pad} on each side) removes more than the transposed convolution "
            f"makes ({(int(n) - 1) * s + k + extra} units from {n})",
            hint="use a smaller pad=",
        )
    return out


def _deconv_shape(p: DeconvParams, ins: Sequence[Shape]) -> Shape:
    _, h, w = spatial(ins[0], "deconv")
    if not isinstance(ins[0][0], int):
        raise ShapeError("the number of input feature maps must be a number")
    return (
        p.channels,
        _deconv_length(h, p.kernel[0], p.stride[0], p.pads[0], p.output_pad[0]),
        _deconv_length(w, p.kernel[1], p.stride[1], p.pads[1], p.output_pad[1]),
    )


def _deconv_rf(p: DeconvParams, rfs: Sequence[RF]) -> RF:
    """The receptive field of a transposed convolution, per axis (j, r: the input's jump
    and size; sizes and offsets below in input jumps).

    Input unit i paints kernel tap t onto output unit o = i·s - pad + t. Turned around,
    with m = o + pad, output unit o receives the input units i with m - k < i·s <= m:
    i from ceil((m-k+1)/s) to floor(m/s), at most ceil(k/s) of them (some see fewer),
    not evenly placed over o. The s output units between two input units share one
    input step: the jump divides by s. Output unit o is centred at c(o) = (m - (k-1)/2)/s
    from input unit 0 (start += (pad - (k-1)/2)/s · j); its last input unit lies at most
    m/s - c(o) = (k-1)/(2s) past c(o), reached when s divides m, and its first at most
    c(o) - (m-k+1)/s = (k-1)/(2s) before it, reached when s divides m-k+1. The smallest
    window around c(o) that holds them all for every o is thus r + (k-1)/s · j: the
    exact count's r + (ceil(k/s) - 1)·j plus a spread of (k-1)/s - ceil(k/s) + 1 (none
    for k = 3, s = 2; (s-1)/s for U-Net's k = s, where each output unit sees one input
    unit, as after a nearest `upsample`, at the same start). Any other centre makes one
    side worse. `output_pad` adds units at the far end only; borders only remove input
    units; neither moves the bound.
    """
    rf = rfs[0]
    if rf.whole:
        return rf
    size, jump, start = [], [], []
    for i in range(2):
        k, s, pad = p.kernel[i], p.stride[i], p.pads[i]
        size.append(rf.size[i] + (k - 1) / s * rf.jump[i])
        start.append(rf.start[i] + (pad - (k - 1) / 2) / s * rf.jump[i])
        jump.append(rf.jump[i] / s)
    return replace(rf, size=(size[0], size[1]), jump=(jump[0], jump[1]), start=(start[0], start[1]))


def _deconv_cost(p: DeconvParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """Weights (Cin, C, kh, kw) plus C biases. MACs as fvcore counts them: every input
    unit is multiplied by each of the C·kh·kw weights of its map, Cin·H·W·C·kh·kw in all
    (no bias). ptflops counts per *output* position, which is s² times more than the
    multiplies a transposed convolution does."""
    cin = int(ins[0][0])
    taps = p.channels * p.kernel[0] * p.kernel[1]
    n = numel(ins[0])
    return Cost(
        params=cin * taps + (p.channels if p.bias else 0),
        macs=None if n is None else n * taps,
    )


register(
    OpDef(
        name="deconv",
        params=DeconvParams,
        positional=("channels", "kernel"),
        shape=_deconv_shape,
        rf=_deconv_rf,
        cost=_deconv_cost,
        weighted=True,
        channels_last=True,
        channels_last_cpu=True,
        kernels=True,
        doc="Transposed convolution (nn.ConvTranspose2d): each input unit paints a learned "
        "kernel onto the output, spaced by the stride, so an HxW map grows to "
        "(H-1)*stride - 2*pad + kernel + output_pad.",
    )
)
