"""The PyTorch builders of most registered operations, keyed by the operation's name.

A builder does not make a module: it returns a `Lowered` (netspec.lower.lowered), a small
description of the constructor call (class, arguments) plus what the graph walk must do
around it. This module's ``BUILDERS`` is one of the mappings `netspec.lower.discover`
collects: a head keeps its builder beside its own modules (`ssd` in netspec.lower.ssd). The
registry itself stays free of torch; a test checks that the collected builders and
`netspec.ops.REGISTRY` name the same operations.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from netspec.ir import OpParams, Shape
from netspec.lower.detection import grid_decoding
from netspec.lower.layers import (
    Add,
    CenterCrop,
    ChannelLayerNorm,
    ChannelShuffle,
    ChannelSlice,
    Concat,
    Distance,
    DropPath,
    EuclideanRBF,
    FixedConv2d,
    GlobalLPPool2d,
    L2Norm,
    LayerScale,
    LocallyConnected2d,
    LPPool,
    Max,
    Mean,
    Mul,
    Permute,
    Resize,
    Scale,
    ScaledTanh,
    Sub,
    Subsample2d,
    TableConv2d,
    lenet5_prototypes,
    random_prototypes,
)
from netspec.lower.lowered import Builder, Call, Inline, Lowered
from netspec.ops.activations import (
    GeluParams,
    HardtanhParams,
    ScaleParams,
    SoftplusParams,
    prelu_channels,
)
from netspec.ops.channels import SliceParams
from netspec.ops.depth import FactorParams
from netspec.ops.normalization import (
    GroupNormParams,
    InstanceNormParams,
    L2NormParams,
    LayerNormParams,
)
from netspec.ops.pointwise import (
    BatchNormParams,
    DenseParams,
    DropoutParams,
    EluParams,
    LeakyParams,
    LrnParams,
    ProjectParams,
    RbfParams,
    project_is_identity,
)
from netspec.ops.registry import numel
from netspec.ops.regularize import DropPathParams, LayerScaleParams
from netspec.ops.shape import ChannelShuffleParams, CropParams, PadParams, PermuteParams, crop_box
from netspec.ops.spatial import ConvParams, LocalParams, LpPoolParams, PoolParams, SubsampleParams
from netspec.ops.upsampling import DeconvParams, ResizeParams, UpsampleParams


def _one(pair: tuple[int, int]) -> int | tuple[int, int]:
    """`3` for `(3, 3)`: the way a person writes a square kernel, stride or padding."""
    return pair[0] if pair[0] == pair[1] else pair


def _padding(pads: tuple[tuple[int, int], tuple[int, int]]) -> int | tuple[int, int]:
    (top, bottom), (left, right) = pads
    if top != bottom or left != right:
        raise NotImplementedError(f"asymmetric padding {pads} has no PyTorch lowering yet")
    return _one((top, left))


def _opts(**given: tuple[Any, Any]) -> tuple[tuple[str, Any], ...]:
    """Keyword arguments as (value, default) pairs; only those that differ are written."""
    return tuple((k, v) for k, (v, default) in given.items() if v != default)


def _conv(p: ConvParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    cin = int(ins[0][0])
    if len(ins[0]) == 2:
        return _conv1d(p, cin)
    stride, padding, dilation = _one(p.stride), _padding(p.pads()), _one(p.dilation)
    geometry = {"stride": (stride, 1), "padding": (padding, 0), "dilation": (dilation, 1)}
    if p.fixed is not None:
        kernels = Call(torch.tensor, ([[list(r) for r in k] for k in p.fixed],))
        return Lowered(Call(FixedConv2d, (kernels, cin), _opts(**geometry)))
    assert p.channels is not None and p.kernel is not None
    kernel, bias = _one(p.kernel), {"bias": (p.bias, True)}
    if p.connect is not None:
        table = [list(row) for row in p.connect]
        args = (cin, p.channels, kernel, table)
        return Lowered(Call(TableConv2d, args, _opts(**geometry, **bias)), p.init)
    opts = _opts(**geometry, groups=(p.groups, 1), **bias)
    return Lowered(Call(nn.Conv2d, (cin, p.channels, kernel), opts), p.init)


def _conv1d(p: ConvParams, cin: int) -> Lowered:
    """A convolution along a signal: every size is its W entry (the shape rule checked them)."""
    assert p.channels is not None and p.kernel is not None
    opts = _opts(
        stride=(p.stride[1], 1),
        padding=(p.pads()[1][0], 0),
        dilation=(p.dilation[1], 1),
        groups=(p.groups, 1),
        bias=(p.bias, True),
    )
    return Lowered(Call(nn.Conv1d, (cin, p.channels, p.kernel[1]), opts), p.init)


def _local(p: LocalParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    c, h, w = (int(d) for d in ins[0])
    opts = _opts(stride=(_one(p.stride), 1), padding=(_padding(p.pads()), 0), bias=(p.bias, True))
    args = (c, p.channels, _one((h, w)), _one(p.kernel))
    return Lowered(Call(LocallyConnected2d, args, opts), p.init)


def _flat_in(ins: Sequence[Shape]) -> tuple[int, bool]:
    """Input features of a stage that flattens, and whether it must flatten first."""
    n = numel(ins[0])
    assert n is not None, "infer guarantees a fixed size before a dense stage"
    return n, len(ins[0]) != 1


def _dense(p: DenseParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    n, flatten = _flat_in(ins)
    call = Call(nn.Linear, (n, p.units), _opts(bias=(p.bias, True)))
    return Lowered(call, p.init, flatten)


def _frame(features: int) -> tuple[int, int] | None:
    """A bitmap frame (height, width >= 3) holding `features` pixels, nearest to 12x7."""
    frames = [(h, features // h) for h in range(3, features // 3 + 1) if features % h == 0]
    frames = [(h, w) for h, w in frames if h >= w]
    return min(frames, key=lambda f: abs(f[0] / f[1] - 12 / 7), default=None)


def _rbf(p: RbfParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    n, flatten = _flat_in(ins)
    frame = _frame(n) if p.prototypes == "lenet5" else None
    if frame is None:
        prototypes = Call(random_prototypes, (p.classes, n))
    else:
        prototypes = Call(lenet5_prototypes, (p.classes, *frame))
    return Lowered(Call(EuclideanRBF, (n, prototypes)), flatten=flatten)


_POOLS: dict[tuple[str, int], tuple[type[nn.Module], type[nn.Module]]] = {
    ("maxpool", 2): (nn.MaxPool2d, nn.AdaptiveMaxPool2d),
    ("avgpool", 2): (nn.AvgPool2d, nn.AdaptiveAvgPool2d),
    ("maxpool", 1): (nn.MaxPool1d, nn.AdaptiveMaxPool1d),
    ("avgpool", 1): (nn.AvgPool1d, nn.AdaptiveAvgPool1d),
}


def _axes(pair: tuple[int, int], dims: int) -> int | tuple[int, int]:
    """A size as PyTorch's 2-D (`3` or `(3, 5)`) or 1-D (the W entry) layers take it."""
    return _one(pair) if dims == 2 else pair[1]


def _pool(kind: str) -> Builder:
    def build(p: PoolParams, ins: Sequence[Shape], out: Shape) -> Lowered:
        dims = len(ins[0]) - 1
        window, adaptive = _POOLS[(kind, dims)]
        if p.kernel == "global":
            return Lowered(Call(adaptive, (1,)))
        to = p.output_size()
        if to is not None:
            return Lowered(Call(adaptive, (_axes(to, dims),)))
        kernel = _axes(p.window, dims)
        (top, _), (left, _) = p.pads()
        padding = _one((top, left)) if dims == 2 else left
        opts = _opts(
            stride=(_axes(p.strides, dims), kernel),
            padding=(padding, 0),
            dilation=(_axes(p.dilations(), dims), 1),
            ceil_mode=(p.ceil, False),
        )
        return Lowered(Call(window, (kernel,), opts))

    return build


def _lppool(p: LpPoolParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    if p.kernel == "global":
        return Lowered(Call(GlobalLPPool2d, (p.p,)))
    dims = len(ins[0]) - 1
    (top, bottom), (left, right) = p.pads()
    padding = (left, right, top, bottom) if dims == 2 else (left, right)
    kernel = _axes(p.window, dims)
    opts = _opts(
        stride=(_axes(p.strides, dims), kernel),
        padding=(padding if any(padding) else (), ()),
        ceil_mode=(p.ceil, False),
        dims=(dims, 2),
    )
    return Lowered(Call(LPPool, (p.p, kernel), opts))


def _subsample(p: SubsampleParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    kernel = _one(p.kernel)
    opts = _opts(stride=(None if p.stride is None else _one(p.stride), None))
    return Lowered(Call(Subsample2d, (int(ins[0][0]), kernel), opts), p.init)


def _batchnorm(p: BatchNormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    norm = nn.BatchNorm2d if len(ins[0]) == 3 else nn.BatchNorm1d
    opts = _opts(eps=(p.eps, 1e-5), momentum=(p.momentum, 0.1))
    return Lowered(Call(norm, (int(ins[0][0]),), opts))


def _lrn(p: LrnParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    opts = (("alpha", p.alpha), ("beta", p.beta), ("k", p.k))
    return Lowered(Call(nn.LocalResponseNorm, (p.size,), opts))


def _project(p: ProjectParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    """A 1x1 convolution (1-D on a signal; a bias-free `Linear` on a vector), then a norm."""
    if project_is_identity(p, ins[0]):
        return Lowered(Call(nn.Identity))
    cin = int(ins[0][0])
    if len(ins[0]) == 1:
        linear = Call(nn.Linear, (cin, p.channels), (("bias", False),))
        return Lowered(Call(nn.Sequential, (linear, Call(nn.BatchNorm1d, (p.channels,)))))
    conv_class, norm = (
        (nn.Conv2d, nn.BatchNorm2d) if len(ins[0]) == 3 else (nn.Conv1d, nn.BatchNorm1d)
    )
    conv = Call(conv_class, (cin, p.channels, 1), _opts(stride=(p.stride, 1), bias=(False, True)))
    return Lowered(Call(nn.Sequential, (conv, Call(norm, (p.channels,)))))


def _fixed(call: Call) -> Builder:
    """A builder for an operation whose module does not depend on its parameters or shapes."""

    def build(p: Any, ins: Sequence[Shape], out: Shape) -> Lowered:
        return Lowered(call)

    return build


def _merge(module: Callable[[], nn.Module], inline: Inline) -> Builder:
    """A merge: a module without parameters, written inline by `emit_python`."""

    def build(p: Any, ins: Sequence[Shape], out: Shape) -> Lowered:
        return Lowered(Call(module), inline=inline)

    return build


def _per_map(module: Callable[[], nn.Module], sign: str) -> Builder:
    """`add`, `mul`: written inline, a vector among maps viewed as one value per map, as an SE
    block writes it: `x * gate.view(-1, 32, 1, 1)`."""

    def build(p: Any, ins: Sequence[Shape], out: Shape) -> Lowered:
        def spread(x: str, shape: Shape) -> str:
            ones = ", 1" * (len(out) - len(shape))
            if not ones:
                return x
            if isinstance(shape[0], int):
                return f"{x}.view(-1, {shape[0]}{ones})"
            return f"{x}.view({x}.shape[0], -1{ones})"

        def inline(xs: Sequence[str]) -> str:
            return f" {sign} ".join(spread(x, s) for x, s in zip(xs, ins, strict=True))

        return Lowered(Call(module), inline=inline)

    return build


def _dropout(p: DropoutParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.Dropout, (p.p,)))


def _leaky(p: LeakyParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.LeakyReLU, (p.slope,)))


def _elu(p: EluParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.ELU, (), _opts(alpha=(p.alpha, 1.0))))


# ---- shape


def _reshape(p: Any, ins: Sequence[Shape], out: Shape) -> Lowered:
    """Flatten each sample, then unflatten it to the inferred shape (ONNX Reshape)."""
    sizes = tuple(int(d) for d in out)
    if len(sizes) == 1:
        return Lowered(Call(nn.Flatten))
    return Lowered(Call(nn.Unflatten, (1, sizes)), flatten=len(ins[0]) != 1)


def _permute(p: PermuteParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    dims = ", ".join(str(i + 1) for i in p.order)
    return Lowered(Call(Permute, (p.order,)), inline=lambda xs: f"{xs[0]}.permute(0, {dims})")


def _channel_shuffle(p: ChannelShuffleParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(ChannelShuffle, (p.groups,)))


def _slice(p: SliceParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    start, stop = p.channels
    return Lowered(
        Call(ChannelSlice, (start, stop)), inline=lambda xs: f"{xs[0]}[:, {start}:{stop}]"
    )


_PADS = {
    ("constant", 2): nn.ConstantPad2d,
    ("reflect", 2): nn.ReflectionPad2d,
    ("replicate", 2): nn.ReplicationPad2d,
    ("constant", 1): nn.ConstantPad1d,
    ("reflect", 1): nn.ReflectionPad1d,
    ("replicate", 1): nn.ReplicationPad1d,
}


def _pad(p: PadParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    """PyTorch's padding order: last axis first, (left, right, top, bottom)."""
    axes = len(ins[0]) - 1
    widths = tuple(w for side in reversed(p.sides(axes)) for w in side)
    args: tuple[Any, ...] = (widths,) if p.mode != "constant" else (widths, p.value)
    return Lowered(Call(_PADS[(p.mode, axes)], args))


def _crop(p: CropParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(CenterCrop, crop_box(p, ins[0])))


# ---- issue 10: merges, activations, normalizations, upsampling ---------------------------


def _max_inline(xs: Sequence[str]) -> str:
    expr = xs[0]
    for x in xs[1:]:
        expr = f"torch.maximum({expr}, {x})"
    return expr


def _hardtanh(p: HardtanhParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.Hardtanh, (), _opts(min_val=(p.min, -1.0), max_val=(p.max, 1.0))))


def _softplus(p: SoftplusParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.Softplus, (), _opts(beta=(p.beta, 1.0))))


def _prelu(p: OpParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.PReLU, (), (("num_parameters", prelu_channels(ins[0])),)))


def _scale(p: ScaleParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(Scale, (p.factor,)), inline=lambda xs: f"{xs[0]} * {p.factor!r}")


def _layernorm(p: LayerNormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    if p.over == "channels":
        return Lowered(Call(ChannelLayerNorm, (int(ins[0][0]),), _opts(eps=(p.eps, 1e-5))))
    shape = [int(d) for d in ins[0]]
    return Lowered(Call(nn.LayerNorm, (shape,), _opts(eps=(p.eps, 1e-5))))


def _groupnorm(p: GroupNormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    args = (p.groups, int(ins[0][0]))
    return Lowered(Call(nn.GroupNorm, args, _opts(eps=(p.eps, 1e-5))))


def _instancenorm(p: InstanceNormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    opts = (*_opts(eps=(p.eps, 1e-5)), ("affine", True))
    return Lowered(Call(nn.InstanceNorm2d, (int(ins[0][0]),), opts))


# ---- issue 22: ConvNeXt's and SSD's words


def _gelu(p: GeluParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.GELU, (), _opts(approximate=(p.approximate, "none"))))


def _l2norm(p: L2NormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(L2Norm, (int(ins[0][0]),), _opts(scale=(p.scale, 1.0))))


def _layer_scale(p: LayerScaleParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(LayerScale, (int(ins[0][0]), p.value)))


def _drop_path(p: DropPathParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(DropPath, (p.p,)))


def _upsample(p: UpsampleParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    given = p.factors or p.to  # `upsample 2x3`, or `upsample to 64x64`
    assert given is not None
    size = ("scale_factor" if p.factors else "size", _one(given))
    opts: tuple[tuple[str, Any], ...] = (size, *_interpolation(p.mode, p.align_corners))
    return Lowered(Call(nn.Upsample, (), opts))


def _interpolation(mode: str, align_corners: bool) -> tuple[tuple[str, Any], ...]:
    """`mode=` and `align_corners=` as PyTorch takes them: nearest takes no align_corners
    (PyTorch refuses one), bilinear is given it always (PyTorch warns without it)."""
    if mode == "bilinear":
        return (("mode", "bilinear"), ("align_corners", align_corners))
    return ()


def _resize(p: ResizeParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    """x interpolated to like's H x W; the emitted Python writes F.interpolate inline."""
    opts = _interpolation(p.mode, p.align_corners)
    given = "".join(f', {k}="{v}"' if isinstance(v, str) else f", {k}={v!r}" for k, v in opts)
    return Lowered(
        Call(Resize, (), opts),
        inline=lambda xs: f"nn.functional.interpolate({xs[0]}, size={xs[1]}.shape[-2:]{given})",
    )


def _pixel_shuffle(p: FactorParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.PixelShuffle, (p.factor,)))


def _pixel_unshuffle(p: FactorParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(nn.PixelUnshuffle, (p.factor,)))


def _deconv(p: DeconvParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    opts = _opts(
        stride=(_one(p.stride), 1),
        padding=(_one(p.pads), 0),
        output_padding=(_one(p.output_pad), 0),
        bias=(p.bias, True),
    )
    args = (int(ins[0][0]), p.channels, _one(p.kernel))
    return Lowered(Call(nn.ConvTranspose2d, args, opts))


BUILDERS: dict[str, Builder] = {
    "conv": _conv,
    "local": _local,
    "dense": _dense,
    "rbf": _rbf,
    "flatten": _fixed(Call(nn.Flatten)),
    "maxpool": _pool("maxpool"),
    "avgpool": _pool("avgpool"),
    "lppool": _lppool,
    "subsample": _subsample,
    "batchnorm": _batchnorm,
    "lrn": _lrn,
    "dropout": _dropout,
    "relu": _fixed(Call(nn.ReLU)),
    "tanh": _fixed(Call(nn.Tanh)),
    "sigmoid": _fixed(Call(nn.Sigmoid)),
    "scaled_tanh": _fixed(Call(ScaledTanh)),
    "gelu": _gelu,
    "identity": _fixed(Call(nn.Identity)),
    # the raw grid map passes (`loss yolo` reads it); the exported graph decodes it to boxes
    "detect": lambda p, ins, out: Lowered(Call(nn.Identity), decode=grid_decoding),
    "leaky_relu": _leaky,
    "elu": _elu,
    "softmax": _fixed(Call(nn.Softmax, (), (("dim", 1),))),
    "add": _per_map(Add, "+"),
    "concat": _merge(Concat, lambda xs: f"torch.cat([{', '.join(xs)}], 1)"),
    "distance": _merge(Distance, lambda xs: f"({xs[0]} - {xs[1]}).abs()"),
    "project": _project,
    # ---- shape
    "reshape": _reshape,
    "permute": _permute,
    "channel_shuffle": _channel_shuffle,
    "slice": _slice,
    "pad": _pad,
    "crop": _crop,
    # ---- issue 10 (ops1): merges, activations, normalizations, upsampling
    "mul": _per_map(Mul, "*"),
    "sub": _merge(Sub, lambda xs: f"{xs[0]} - {xs[1]}"),
    "mean": _merge(Mean, lambda xs: f"({' + '.join(xs)}) / {len(xs)}"),
    "max": _merge(Max, _max_inline),
    "scale": _scale,
    "relu6": _fixed(Call(nn.ReLU6)),
    "hardtanh": _hardtanh,
    "silu": _fixed(Call(nn.SiLU)),
    "hardswish": _fixed(Call(nn.Hardswish)),
    "hardsigmoid": _fixed(Call(nn.Hardsigmoid)),
    "mish": _fixed(Call(nn.Mish)),
    "prelu": _prelu,
    "softplus": _softplus,
    "log_softmax": _fixed(Call(nn.LogSoftmax, (), (("dim", 1),))),
    "layernorm": _layernorm,
    "groupnorm": _groupnorm,
    "instancenorm": _instancenorm,
    "upsample": _upsample,
    "deconv": _deconv,
    # ---- issue 22: resizing to another tensor's size, depth to space and back
    "resize": _resize,
    "pixel_shuffle": _pixel_shuffle,
    "pixel_unshuffle": _pixel_unshuffle,
    # ---- issue 22: ConvNeXt's and SSD's words
    "l2norm": _l2norm,
    "layer_scale": _layer_scale,
    "drop_path": _drop_path,
}
