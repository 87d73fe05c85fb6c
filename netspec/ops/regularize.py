"""What a residual branch is scaled by before it is added back: a learned layer scale, and
stochastic depth (drop path).

ConvNeXt and CaiT end each residual branch with `layer_scale`, a learned gamma per channel
that starts small (`layer_scale 1e-6`), so that a deep network starts close to the identity;
ConvNeXt, Swin and EfficientNet then drop the whole branch for a random part of the samples
while training (`drop_path 0.1`, stochastic depth: Huang et al., 2016), scaling the kept ones
by 1/(1-p) as dropout does. Both keep their input's shape and receptive field.

`layer_scale` multiplies each channel by its own learned value: an elementwise map with one
parameter per channel and one MAC per output. `drop_path` has no parameters and is the
identity at inference (and in the ONNX export), like `dropout`: what it is at inference is
what its facts say.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.normalization import channel_count
from netspec.ops.registry import Cost, OpDef, macs_of, register


class LayerScaleParams(OpParams):
    value: Annotated[float, Field(allow_inf_nan=False)] = 1e-6


def _layer_scale_shape(p: LayerScaleParams, ins: Sequence[Shape]) -> Shape:
    channel_count(ins[0], "layer_scale")
    return ins[0]


register(
    OpDef(
        name="layer_scale",
        params=LayerScaleParams,
        positional=("value",),
        shape=_layer_scale_shape,
        cost=lambda p, ins, out: Cost(
            params=channel_count(ins[0], "layer_scale"), macs=macs_of(out, 1)
        ),
        weighted=True,
        locality="elementwise",
        doc="Multiplies each channel by a learned value that starts at `value` (ConvNeXt's "
        "and CaiT's layer scale).",
    )
)


class DropPathParams(OpParams):
    p: Annotated[float, Field(ge=0, lt=1)]


register(
    OpDef(
        name="drop_path",
        params=DropPathParams,
        positional=("p",),
        shape=lambda p, ins: ins[0],
        output="pass",
        locality="elementwise",
        passes_through=True,
        doc="Stochastic depth: while training, zeroes the whole input of a sample with "
        "probability p and scales the others by 1/(1-p); the identity at inference.",
    )
)
