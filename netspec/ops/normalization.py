"""Normalizations over each sample on its own: layer, group, instance and L2 normalization.

Unlike `batchnorm`, their statistics come from the sample itself, in training and in
inference alike. `layernorm`, `groupnorm` and `instancenorm` over whole maps make every
output unit depend on every input unit their statistics span: the receptive field is the
whole input (`all`), as after a global pool. `layernorm channels` (ConvNeXt's LayerNorm2d)
and `l2norm` (SSD's conv4_3) read only the C values at one position: the receptive field is
kept, and each position is computed from its own values (`locality` "pointwise").

Each learns an elementwise affine map: `layernorm` a weight and a bias per element of the
sample's shape (`nn.LayerNorm(shape)`), or per channel over the channels; `groupnorm` and
`instancenorm` one per feature map; `l2norm` one scale per channel and no bias.
MACs: 5 per element, fvcore's estimate for a normalization with an affine map (the mean,
the variance, the normalization and the affine map; ptflops counts 2); `l2norm` 3 (the
sum of squares, the division, the scale).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    RF,
    Cost,
    Locality,
    OpDef,
    Pos,
    ShapeError,
    macs_of,
    numel,
    register,
    rf_whole,
    spatial,
)
from netspec.text import fmt_shape

Eps = Annotated[float, Field(gt=0, allow_inf_nan=False)]
_PER_ELEMENT = 5
_L2_PER_ELEMENT = 3


class LayerNormParams(OpParams):
    over: Literal["all", "channels"] = "all"
    eps: Eps = 1e-5


class GroupNormParams(OpParams):
    groups: Pos
    eps: Eps = 1e-5


class InstanceNormParams(OpParams):
    eps: Eps = 1e-5


class L2NormParams(OpParams):
    scale: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0


def channel_count(shape: Shape, op: str) -> int:
    """The numeric channel count (C of C x H x W, C x L or a C vector) a layer learns per."""
    c = shape[0]
    if not isinstance(c, int):
        raise ShapeError(f"{op} needs a numeric channel count, got {fmt_shape(shape)}")
    return c


def _layernorm_shape(p: LayerNormParams, ins: Sequence[Shape]) -> Shape:
    if p.over == "channels":
        channel_count(ins[0], "layernorm channels")
        return ins[0]
    if numel(ins[0]) is None:
        raise ShapeError(
            f"layernorm needs a fixed shape, got {fmt_shape(ins[0])}: it learns a weight per "
            "element",
            hint="bind the symbolic size with --set, or use groupnorm 1 (the same statistics, "
            "one weight per feature map)",
        )
    return ins[0]


def _layernorm_cost(p: LayerNormParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """A weight and a bias per element of the sample (per channel over the channels)."""
    n = channel_count(ins[0], "layernorm") if p.over == "channels" else numel(ins[0])
    return Cost(params=2 * int(n or 0), macs=macs_of(out, _PER_ELEMENT))


def _layernorm_rf(p: LayerNormParams, rfs: Sequence[RF]) -> RF:
    return rfs[0] if p.over == "channels" else rf_whole(p, rfs)


def _layernorm_locality(p: LayerNormParams) -> Locality | None:
    return "pointwise" if p.over == "channels" else None


def _groupnorm_shape(p: GroupNormParams, ins: Sequence[Shape]) -> Shape:
    c = channel_count(ins[0], "groupnorm")
    if c % p.groups:
        divisors = [g for g in range(1, c + 1) if c % g == 0]
        raise ShapeError(
            f"groupnorm {p.groups}: the groups must divide the {c} feature maps",
            hint=f"{c} maps split into {', '.join(map(str, divisors[:-1]))} or {divisors[-1]} "
            "groups",
        )
    return ins[0]


def _instancenorm_shape(p: InstanceNormParams, ins: Sequence[Shape]) -> Shape:
    spatial(ins[0], "instancenorm")
    channel_count(ins[0], "instancenorm")
    return ins[0]


def _per_map_cost(p: OpParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """A weight and a bias per feature map; 5 MACs per element."""
    return Cost(params=2 * channel_count(ins[0], "normalization"), macs=macs_of(out, _PER_ELEMENT))


def _l2norm_shape(p: L2NormParams, ins: Sequence[Shape]) -> Shape:
    channel_count(ins[0], "l2norm")
    return ins[0]


def _l2norm_cost(p: L2NormParams, ins: Sequence[Shape], out: Shape) -> Cost:
    return Cost(params=channel_count(ins[0], "l2norm"), macs=macs_of(out, _L2_PER_ELEMENT))


# What the fully convolutional conversion says of a normalization over whole maps.
_OVER_THE_WINDOW = "it normalizes over the whole window, so a window's result depends on it all"


register(
    OpDef(
        name="layernorm",
        params=LayerNormParams,
        positional=("over",),
        shape=_layernorm_shape,
        rf=_layernorm_rf,
        locality_of=_layernorm_locality,
        refusal=_OVER_THE_WINDOW,
        cost=_layernorm_cost,
        weighted=True,
        doc="Layer normalization over each sample's whole shape, with a learned weight and "
        "bias per element (nn.LayerNorm(shape)); `layernorm channels` normalizes the C "
        "values at each position, with a weight and bias per channel (ConvNeXt's).",
    )
)
register(
    OpDef(
        name="groupnorm",
        params=GroupNormParams,
        positional=("groups",),
        shape=_groupnorm_shape,
        rf=rf_whole,
        refusal=_OVER_THE_WINDOW,
        cost=_per_map_cost,
        weighted=True,
        doc="Group normalization: the feature maps in G groups, each normalized over its "
        "maps and positions; a learned weight and bias per map.",
    )
)
register(
    OpDef(
        name="instancenorm",
        params=InstanceNormParams,
        shape=_instancenorm_shape,
        rf=rf_whole,
        refusal=_OVER_THE_WINDOW,
        cost=_per_map_cost,
        weighted=True,
        doc="Instance normalization: each feature map over its own positions, with a learned "
        "weight and bias per map (no running statistics).",
    )
)
register(
    OpDef(
        name="l2norm",
        params=L2NormParams,
        shape=_l2norm_shape,
        cost=_l2norm_cost,
        weighted=True,
        locality="pointwise",
        doc="L2 normalization over the channels at each position, x / ||x||, times a "
        "learned scale per channel that starts at `scale` (SSD's conv4_3: scale=20).",
    )
)
