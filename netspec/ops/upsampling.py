"""Operations that enlarge feature maps: `upsample` (nearest or bilinear, by whole factors)
and `deconv`, the transposed convolution (decoders, U-Net's up-convolutions).

Both divide the receptive field's jump: s output units stand where one input unit stood.
Those units do not read evenly spaced input units, so no size/jump/start is exact: the
size is that of the smallest window, centred where the affine start and jump put each unit,
that holds everything every unit reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Literal

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
    macs_of,
    numel,
    register,
    spatial,
)


def _sym(d: str) -> str:
    return d if d.isidentifier() else f"({d})"


def _stretched(size: Dim, factor: int, extra: int = 0) -> Dim:
    """`factor * size + extra`, kept symbolic for a symbolic size (`2*H`, `2*H-1`)."""
    if isinstance(size, int):
        return factor * size + extra
    scaled = size if factor == 1 else f"{factor}*{_sym(size)}"
    return scaled if extra == 0 else f"{scaled}{extra:+d}"


# ---- upsample --------------------------------------------------------------------------------


class UpsampleParams(OpParams):
    """`upsample 2` or `upsample 2x3`: whole factors along (H, W)."""

    scale: Pair
    mode: Literal["nearest", "bilinear"] = "nearest"
    align_corners: bool = False

    @model_validator(mode="after")
    def _corners_need_bilinear(self) -> UpsampleParams:
        if self.align_corners and self.mode != "bilinear":
            raise ValueError("align_corners=true needs mode=bilinear")
        return self


def _upsample_shape(p: UpsampleParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "upsample")
    return (c, _stretched(h, p.scale[0]), _stretched(w, p.scale[1]))


def _upsample_rf(p: UpsampleParams, rfs: Sequence[RF]) -> RF:
    """Each input unit becomes s output units: the jump is divided by s, and the size is
    that of the smallest window, centred on `start + o * jump`, that holds every input
    unit output unit o reads (in input jumps j, r the input's size; `_upsample_spread`).

    Output unit o stands at input position x = (o + 1/2)/s - 1/2 (PyTorch's half-pixel
    rule), so the first unit's centre moves back by (1 - 1/s)/2 input jumps; with
    `align_corners=true` output unit 0 sits on input unit 0 and the start stays (its
    true step j(n-1)/(sn-1) is taken as j/s: this rule does not see sizes, and the
    size below covers the drift).
    """
    rf = rfs[0]
    if rf.whole:
        return rf
    size, jump, start = [], [], []
    for i, s in enumerate(p.scale):
        size.append(rf.size[i] + _upsample_spread(p, s) * rf.jump[i])
        jump.append(rf.jump[i] / s)
        back = 0 if p.align_corners else (1 - 1 / s) / 2 * rf.jump[i]
        start.append(rf.start[i] - back)
    return replace(rf, size=(size[0], size[1]), jump=(jump[0], jump[1]), start=(start[0], start[1]))


def _upsample_spread(p: UpsampleParams, s: int) -> float:
    """How many input jumps an upsample by s adds to the size (see `_upsample_rf`).

    The units an output reads are not evenly spaced over the input (o reads floor(o/s)
    for nearest), so no affine centre is exact; the size is twice the farthest reach
    of o's input units from its centre c(o), over all o, in input jumps:

    - nearest: o = sq + t reads unit q; c(o) = q + ((t - (s-1)/2))/s, within (s-1)/(2s)
      of q either way: + (s-1)/s (U-Net-like nets: 2x2 upsample adds j/2).
    - bilinear: c(o) = x and o reads floor(x) and floor(x)+1, the latter with weight
      f = frac(x) (none at f = 0): half-width max(f, 1-f). f takes the values
      (2o + 1 - s mod 2s)/(2s): odd numerators for even s, whose worst is 1 - 1/(2s),
      giving + (2s-1)/s; even ones for odd s (f = 0 reads one unit), worst 1 - 1/s,
      giving + 2(s-1)/s.
    - bilinear, align_corners: x = o(n-1)/(sn-1) lags c(o) = o/s by up to (s-1)/s
      near the far end; c(o) - floor(x) = (s-1)/s - u/s + ceil(u(n-1)/(sn-1)) for
      u = sn-1-o units from the end, at most 2(s-1)/s (reached at u = 1);
      floor(x) + 1 - c(o) <= 1. So + 4(s-1)/s.

    Float rounding of x at exact grid points (which can add a weight of 1e-16 on one
    more unit) is not counted, as it is not a dependency of the formula.
    """
    if s == 1:
        return 0.0
    if p.mode == "nearest":
        return (s - 1) / s
    if p.align_corners:
        return 4 * (s - 1) / s
    return (2 * s - 1) / s if s % 2 == 0 else 2 * (s - 1) / s


def _upsample_cost(p: UpsampleParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """fvcore's count: nearest one per output (a copy), bilinear four (the 2x2 it weighs);
    ptflops counts one per output for both."""
    return Cost(macs=macs_of(out, 4 if p.mode == "bilinear" else 1))


register(
    OpDef(
        name="upsample",
        params=UpsampleParams,
        positional=("scale",),
        shape=_upsample_shape,
        rf=_upsample_rf,
        cost=_upsample_cost,
        output="pass",
        doc="Upsampling by a whole factor per axis: each feature map grows to sH x sW, "
        "by copying the nearest unit (`mode=nearest`) or by bilinear interpolation "
        "(`mode=bilinear`, `align_corners=` as in PyTorch's nn.Upsample).",
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
    out = _stretched(n, s, k - 2 * pad + extra - s)
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
