"""Operations with a local receptive field: convolution (shared weights), locally
connected layers (unshared), pooling and LeNet's trainable subsampling.

Convolution and the pools also slide along a 1-D signal (C x L): there a kernel, stride,
pad and dilation are one number (`conv 16 7`), the window moves along L, and the
receptive field is reported along that one axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from netspec.ir import Dim, OpParams, Shape
from netspec.ops.registry import (
    RF,
    Cost,
    Init,
    Matrix,
    OpDef,
    Padding,
    Pair,
    Pos,
    ShapeError,
    macs_of,
    maps_or_signal,
    register,
    resolve_pad,
    rf_whole,
    spatial,
    window_out,
    window_rf,
    window_sizes,
)
from netspec.text import fmt_shape


class ConvParams(OpParams):
    channels: Pos | None = None
    kernel: Pair | None = None
    stride: Pair = (1, 1)
    pad: Padding = (0, 0)
    dilation: Pair = (1, 1)
    groups: Pos = 1
    bias: bool = True
    connect: tuple[tuple[int, ...], ...] | None = None
    fixed: tuple[Matrix, ...] | None = None
    init: Init = "default"

    @model_validator(mode="after")
    def _kernel_or_fixed(self) -> ConvParams:
        if self.fixed is not None:
            sizes = {(len(k), len(k[0]) if k else 0) for k in self.fixed}
            if len(sizes) != 1 or any(len(r) != len(k[0]) for k in self.fixed for r in k):
                raise ValueError("fixed kernels must all be rectangular and of one size")
            if self.channels is not None or self.connect is not None or self.groups != 1:
                raise ValueError(
                    "fixed kernels set the channels: leave out channels, connect and groups"
                )
            return self
        if self.channels is None or self.kernel is None:
            raise ValueError(
                "conv needs a number of feature maps and a kernel size, e.g. 'conv 6 5x5'"
            )
        if self.connect is not None and self.groups != 1:
            raise ValueError("connect= and groups= cannot be combined")
        return self

    @property
    def kernel_size(self) -> tuple[int, int]:
        if self.fixed is not None:
            return (len(self.fixed[0]), len(self.fixed[0][0]))
        assert self.kernel is not None
        return self.kernel

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return resolve_pad(self.pad, self.kernel_size, self.dilation, self.stride)


def _check_table(p: ConvParams, cin: int) -> None:
    assert p.connect is not None and p.channels is not None
    if len(p.connect) != p.channels:
        raise ShapeError(
            f"the connection table has {len(p.connect)} rows but the layer has "
            f"{p.channels} feature maps",
            hint="a table has one row per output map, listing the input maps it sees",
        )
    for row, maps in enumerate(p.connect):
        bad = [m for m in maps if not 0 <= m < cin or m != int(m)]
        if bad or not maps:
            raise ShapeError(
                f"row {row} of the connection table names input maps {list(maps)}; "
                f"the input has maps 0..{cin - 1}",
            )
        if len(set(maps)) != len(maps):
            raise ShapeError(f"row {row} of the connection table repeats an input map")


def _conv_shape(p: ConvParams, ins: Sequence[Shape]) -> Shape:
    cin, dims = maps_or_signal(ins[0], "conv")
    if not isinstance(cin, int):
        raise ShapeError("the number of input feature maps must be a number")
    if len(dims) == 1 and (p.fixed is not None or p.connect is not None):
        raise ShapeError(
            "fixed= kernels and connect= tables need 2-D feature maps, not a 1-D signal"
        )
    hw = window_sizes(dims, p.kernel_size, p.stride, p.pads(), p.dilation)
    if p.fixed is not None:
        return (cin * len(p.fixed), *hw)
    assert p.channels is not None
    if p.connect is not None:
        _check_table(p, cin)
    elif cin % p.groups or p.channels % p.groups:
        raise ShapeError(
            f"groups={p.groups} must divide both the input maps ({cin}) and the output "
            f"maps ({p.channels})"
        )
    return (p.channels, *hw)


def _conv_rf(p: ConvParams, rfs: Sequence[RF]) -> RF:
    return window_rf(rfs[0], p.kernel_size, p.stride, p.pads(), p.dilation)


def _conv_cost(p: ConvParams, ins: Sequence[Shape], out: Shape) -> Cost:
    kh, kw = p.kernel_size if len(ins[0]) == 3 else (1, p.kernel_size[1])
    cin = int(ins[0][0])
    if p.fixed is not None:
        return Cost(fixed=len(p.fixed) * kh * kw, macs=macs_of(out, kh * kw))
    assert p.channels is not None
    if p.connect is not None:
        links = sum(len(r) for r in p.connect)
        weights = links * kh * kw
        macs = macs_of(out[1:], weights)
    else:
        weights = p.channels * (cin // p.groups) * kh * kw
        macs = macs_of(out, (cin // p.groups) * kh * kw)
    return Cost(params=weights + (p.channels if p.bias else 0), macs=macs)


register(
    OpDef(
        name="conv",
        params=ConvParams,
        positional=("channels", "kernel"),
        shape=_conv_shape,
        rf=_conv_rf,
        cost=_conv_cost,
        weighted=True,
        channels_last=True,
        channels_last_cpu=True,
        locality="sliding",
        kernels=True,
        doc="Convolution: a local receptive field whose weights are shared across positions. "
        "`connect=TABLE` keeps only the listed input maps per output map; "
        "`fixed=[k1, k2]` applies constant kernels to every input map.",
    )
)


class LocalParams(OpParams):
    channels: Pos
    kernel: Pair
    stride: Pair = (1, 1)
    pad: Padding = (0, 0)
    bias: bool = True
    init: Init = "default"

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return resolve_pad(self.pad, self.kernel, (1, 1), self.stride)


def _local_shape(p: LocalParams, ins: Sequence[Shape]) -> Shape:
    _, h, w = spatial(ins[0], "local")
    if not isinstance(h, int) or not isinstance(w, int):
        raise ShapeError(
            "a locally connected layer needs a fixed input size: it has one kernel per position",
            hint="give the input a numeric size",
        )
    (ph, pw) = p.pads()
    return (
        p.channels,
        window_out(h, p.kernel[0], p.stride[0], ph),
        window_out(w, p.kernel[1], p.stride[1], pw),
    )


def _local_cost(p: LocalParams, ins: Sequence[Shape], out: Shape) -> Cost:
    per_out = int(ins[0][0]) * p.kernel[0] * p.kernel[1]
    positions = int(out[1]) * int(out[2])
    weights = positions * p.channels * per_out
    bias = positions * p.channels if p.bias else 0
    return Cost(params=weights + bias, macs=macs_of(out, per_out))


register(
    OpDef(
        name="local",
        params=LocalParams,
        positional=("channels", "kernel"),
        shape=_local_shape,
        rf=lambda p, rfs: window_rf(rfs[0], p.kernel, p.stride, p.pads()),
        cost=_local_cost,
        weighted=True,
        channels_last=True,
        refusal="a locally connected layer has its own kernel at each position of the window",
        doc="Locally connected layer: a local receptive field, but one kernel per output "
        "position (weights NOT shared).",
    )
)


class PoolParams(OpParams):
    """A window (`lppool 2x2`) or `global`."""

    kernel: Pair | Literal["global"]
    stride: Pair | None = None
    pad: Padding = (0, 0)
    ceil: bool = False

    @property
    def window(self) -> tuple[int, int]:
        assert isinstance(self.kernel, tuple)
        return self.kernel

    @property
    def strides(self) -> tuple[int, int]:
        return self.stride or self.window

    def dilations(self) -> tuple[int, int]:
        return (1, 1)

    def output_size(self) -> tuple[int, int] | None:
        """The size pooled `to` (adaptive pooling); None for a window or `global`."""
        return None

    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return resolve_pad(self.pad, self.window, self.dilations(), self.strides)


class AdaptivePoolParams(PoolParams):
    """A window (`maxpool 2x2`), `global`, or adaptive pooling `to` an output size."""

    kernel: Pair | Literal["global", "to"] | None = None  # type: ignore[assignment]
    to: Pair | None = None  # adaptive pooling: the output size (`avgpool to 7x7`)

    @model_validator(mode="after")
    def _window_or_size(self) -> AdaptivePoolParams:
        if self.to is not None:
            if self.kernel not in (None, "to"):
                raise ValueError(
                    "pooling takes a window or 'to' an output size, not both: "
                    "e.g. 'avgpool 2x2' or 'avgpool to 7x7'"
                )
            if self.stride is not None or self.pad != (0, 0) or self.ceil:
                raise ValueError(
                    "pooling 'to' a size chooses its own windows: leave out stride, pad and ceil"
                )
        elif self.kernel is None:
            raise ValueError("pooling needs a window, 'global' or 'to' a size, e.g. 'maxpool 2x2'")
        elif self.kernel == "to":
            raise ValueError("'to' needs the output size, e.g. 'avgpool to 7x7'")
        return self

    def output_size(self) -> tuple[int, int] | None:
        return self.to


class MaxPoolParams(AdaptivePoolParams):
    dilation: Pair = (1, 1)

    @model_validator(mode="after")
    def _dilation_needs_a_window(self) -> MaxPoolParams:
        if self.dilation != (1, 1) and not isinstance(self.kernel, tuple):
            raise ValueError("dilation= spaces the taps of a window, e.g. 'maxpool 3x3 dilation=2'")
        return self

    def dilations(self) -> tuple[int, int]:
        return self.dilation


def _adaptive_sizes(to: tuple[int, int], dims: tuple[Dim, ...]) -> tuple[int, ...]:
    """The output sizes of pooling `to` a size; each input size must be a multiple of its own."""
    out = (to[1],) if len(dims) == 1 else to
    if len(dims) == 1 and to[0] != to[1]:
        raise ShapeError(
            f"on a 1-D signal (C x L) the size after 'to' is one number, got {to[0]}x{to[1]}"
        )
    if any(isinstance(n, int) and n % m for n, m in zip(dims, out, strict=True)):
        sizes = [int(n) if isinstance(n, int) else 0 for n in dims]
        below = [max(n // m, 1) * m for n, m in zip(sizes, out, strict=True)]
        above = [-(-n // m) * m for n, m in zip(sizes, out, strict=True)]
        raise ShapeError(
            f"pooling to {fmt_shape(out)} needs an input size that is a multiple of "
            f"{fmt_shape(out)}, got {fmt_shape(dims)}",
            hint=f"crop to {fmt_shape(tuple(below))} or pad to {fmt_shape(tuple(above))} first, "
            "or pool with a window: windows of unequal size have no standard ONNX form",
        )
    return out


def _pool_shape(p: PoolParams, ins: Sequence[Shape]) -> Shape:
    c, dims = maps_or_signal(ins[0], "pooling")
    if p.kernel == "global":
        return (c, *(1 for _ in dims))
    to = p.output_size()
    if to is not None:
        return (c, *_adaptive_sizes(to, dims))
    (ph, pw), k = p.pads(), p.window
    if max(ph) * 2 > k[0] or max(pw) * 2 > k[1]:
        raise ShapeError("pooling padding must be at most half the window")
    return (c, *window_sizes(dims, k, p.strides, (ph, pw), p.dilations(), p.ceil))


def _pool_rf(p: PoolParams, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
    """A window's rule; pooling `to` a size is the window in/out with stride in/out (exact,
    as the sizes divide); `global`, `to 1x1` and a symbolic input size see the whole input."""
    if p.kernel == "global":
        return rf_whole(p, rfs)
    to = p.output_size()
    if to is not None:
        dims = ins[0][1:]
        out = _adaptive_sizes(to, dims)
        if all(m == 1 for m in out) or not all(isinstance(n, int) for n in dims):
            return rf_whole(p, rfs)
        ks = [int(n) // m for n, m in zip(dims, out, strict=True)]
        k = (ks[0], ks[0]) if len(ks) == 1 else (ks[0], ks[1])
        return window_rf(rfs[0], k, k, ((0, 0), (0, 0)))
    return window_rf(rfs[0], p.window, p.strides, p.pads(), p.dilations())


def _pool_cost(p: PoolParams, ins: Sequence[Shape], out: Shape) -> Cost:
    return Cost(macs=0)


for _name, _params, _selects, _doc in (
    (
        "maxpool",
        MaxPoolParams,
        True,
        "Max pooling over a window (`dilation=` spaces its taps); `maxpool global` pools "
        "each map to one value; `maxpool to 1x1` pools to a given output size.",
    ),
    (
        "avgpool",
        AdaptivePoolParams,
        False,
        "Average pooling over a window; `avgpool global` averages each map; "
        "`avgpool to 7x7` averages to a given output size (adaptive pooling).",
    ),
):
    register(
        OpDef(
            name=_name,
            params=_params,
            positional=("kernel", "to"),
            shape=_pool_shape,
            sized_rf=_pool_rf,
            cost=_pool_cost,
            locality="sliding",
            selects=_selects,
            doc=_doc,
        )
    )


class LpPoolParams(PoolParams):
    p: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 2.0


register(
    OpDef(
        name="lppool",
        params=LpPoolParams,
        positional=("kernel",),
        shape=_pool_shape,
        sized_rf=_pool_rf,
        locality="sliding",
        doc="Power-average pooling: (sum |x|^p)^(1/p) over a window (p=2 by default), "
        "as ONNX's LpPool.",
    )
)


class SubsampleParams(OpParams):
    kernel: Pair
    stride: Pair | None = None
    init: Init = "default"


def _subsample_shape(p: SubsampleParams, ins: Sequence[Shape]) -> Shape:
    c, h, w = spatial(ins[0], "subsample")
    s = p.stride or p.kernel
    return (c, window_out(h, p.kernel[0], s[0], (0, 0)), window_out(w, p.kernel[1], s[1], (0, 0)))


register(
    OpDef(
        name="subsample",
        params=SubsampleParams,
        positional=("kernel",),
        shape=_subsample_shape,
        rf=lambda p, rfs: window_rf(rfs[0], p.kernel, p.stride or p.kernel, ((0, 0), (0, 0))),
        cost=lambda p, ins, out: Cost(params=2 * int(out[0]), macs=macs_of(out, 1)),
        weighted=True,
        locality="sliding",
        doc="LeNet's trainable subsampling: the sum over each window, times a coefficient, "
        "plus a bias, both learned per feature map.",
    )
)
