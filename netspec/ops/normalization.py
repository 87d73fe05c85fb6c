"""Normalizations over each sample on its own: layer, group and instance normalization.

Unlike `batchnorm`, their statistics come from the sample itself, in training and in
inference alike, so every output unit depends on every input unit its statistics span:
the receptive field is the whole input (`all`), as after a global pool.

Each learns an elementwise affine map: `layernorm` a weight and a bias per element of the
sample's shape (`nn.LayerNorm(shape)`), `groupnorm` and `instancenorm` one per feature map.
MACs: 5 per element, fvcore's estimate for a normalization with an affine map (the mean,
the variance, the normalization and the affine map; ptflops counts 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    Cost,
    CostRule,
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


class LayerNormParams(OpParams):
    eps: Eps = 1e-5


class GroupNormParams(OpParams):
    groups: Pos
    eps: Eps = 1e-5


class InstanceNormParams(OpParams):
    eps: Eps = 1e-5


def _layernorm_shape(p: LayerNormParams, ins: Sequence[Shape]) -> Shape:
    if numel(ins[0]) is None:
        raise ShapeError(
            f"layernorm needs a fixed shape, got {fmt_shape(ins[0])}: it learns a weight per "
            "element",
            hint="bind the symbolic size with --set, or use groupnorm 1 (the same statistics, "
            "one weight per feature map)",
        )
    return ins[0]


def _channels(shape: Shape, op: str) -> int:
    c = shape[0]
    if not isinstance(c, int):
        raise ShapeError(f"{op} needs a numeric channel count, got {fmt_shape(shape)}")
    return c


def _groupnorm_shape(p: GroupNormParams, ins: Sequence[Shape]) -> Shape:
    c = _channels(ins[0], "groupnorm")
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
    _channels(ins[0], "instancenorm")
    return ins[0]


def _cost(per_element: bool) -> CostRule:
    """Two parameters per element (`layernorm`) or per feature map; 5 MACs per element."""

    def rule(p: OpParams, ins: Sequence[Shape], out: Shape) -> Cost:
        n = numel(ins[0]) if per_element else _channels(ins[0], "normalization")
        return Cost(params=2 * int(n or 0), macs=macs_of(out, _PER_ELEMENT))

    return rule


# What the fully convolutional conversion says of a normalization over whole maps.
_OVER_THE_WINDOW = "it normalizes over the whole window, so a window's result depends on it all"


register(
    OpDef(
        name="layernorm",
        params=LayerNormParams,
        shape=_layernorm_shape,
        rf=rf_whole,
        refusal=_OVER_THE_WINDOW,
        cost=_cost(per_element=True),
        weighted=True,
        doc="Layer normalization over each sample's whole shape, with a learned weight and "
        "bias per element (nn.LayerNorm(shape)).",
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
        cost=_cost(per_element=False),
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
        cost=_cost(per_element=False),
        weighted=True,
        doc="Instance normalization: each feature map over its own positions, with a learned "
        "weight and bias per map (no running statistics).",
    )
)
