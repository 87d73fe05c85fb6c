"""The activations of modern CNNs (MobileNet, EfficientNet, ConvNeXt's GELU), a learned one
(PReLU), a constant scale, and the log-softmax output.

Each keeps its input's shape and its receptive field. MACs: an activation counts nothing,
as fvcore counts them and as `relu` already does here (ptflops counts one per element for
the few it knows: relu6, prelu, silu); `scale K` one multiply per output, as ptflops counts
`torch.mul`.
Only `prelu` has parameters: one slope per feature map (per unit after a dense stage).

What a network ending in one of them outputs (`OpDef.output`): plain numbers, which
`netspec run` reads as logits, except `hardsigmoid`, which is a probability like
`sigmoid`'s; `log_softmax` gives log-probabilities, and those *are* logits: their softmax
is the probabilities themselves, their argmax the predicted class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field, model_validator

from netspec.ir import OpParams, Shape
from netspec.ops.pointwise import NoParams, register_activations
from netspec.ops.registry import Cost, OpDef, OutputMeaning, ShapeError, macs_of, register


def _same_shape(p: OpParams, ins: Sequence[Shape]) -> Shape:
    return ins[0]


_PLAIN: tuple[tuple[str, str, OutputMeaning], ...] = (
    ("relu6", "min(max(0, x), 6) (MobileNet).", "logits"),
    ("silu", "x * sigmoid(x), also called swish (EfficientNet).", "logits"),
    ("hardswish", "x * relu6(x + 3) / 6, a cheap swish (MobileNet-v3).", "logits"),
    ("hardsigmoid", "relu6(x + 3) / 6, a cheap sigmoid (MobileNet-v3).", "sigmoid"),
    ("mish", "x * tanh(softplus(x)).", "logits"),
)
register_activations(_PLAIN)
register(
    OpDef(
        name="log_softmax",
        params=NoParams,
        shape=_same_shape,
        doc="Log of the softmax over the features (or maps, per position).",
        locality="pointwise",
    )
)


class GeluParams(OpParams):
    approximate: Literal["none", "tanh"] = "none"


register(
    OpDef(
        name="gelu",
        params=GeluParams,
        shape=_same_shape,
        locality="elementwise",
        activation=True,
        doc="Gaussian error linear unit, x * Phi(x); `approximate=tanh` uses the tanh "
        "formula (nn.GELU's).",
    )
)


class HardtanhParams(OpParams):
    min: float = -1.0
    max: float = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> HardtanhParams:
        if self.min >= self.max:
            raise ValueError(f"hardtanh needs min < max, got min={self.min} max={self.max}")
        return self


register(
    OpDef(
        name="hardtanh",
        params=HardtanhParams,
        shape=_same_shape,
        locality="elementwise",
        activation=True,
        doc="x clipped to [min, max].",
    )
)


class SoftplusParams(OpParams):
    beta: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 1.0


register(
    OpDef(
        name="softplus",
        params=SoftplusParams,
        shape=_same_shape,
        locality="elementwise",
        activation=True,
        doc="log(1 + exp(beta * x)) / beta, a smooth relu.",
    )
)


def prelu_channels(shape: Shape) -> int:
    """The number of slopes `prelu` learns: one per feature map (or unit of a vector)."""
    channels = shape[0]
    if not isinstance(channels, int):
        raise ShapeError(f"prelu needs a numeric channel count, got {channels}")
    return channels


register(
    OpDef(
        name="prelu",
        params=NoParams,
        shape=_same_shape,
        cost=lambda p, ins, out: Cost(params=prelu_channels(ins[0])),
        weighted=True,
        locality="elementwise",
        activation=True,
        doc="max(0, x) + a * min(0, x) with a learned slope a per feature map (initially 0.25).",
    )
)


class ScaleParams(OpParams):
    factor: Annotated[float, Field(allow_inf_nan=False)]


register(
    OpDef(
        name="scale",
        params=ScaleParams,
        positional=("factor",),
        shape=_same_shape,
        cost=lambda p, ins, out: Cost(macs=macs_of(out, 1)),
        locality="elementwise",
        doc="Multiplies by a constant: `scale 0.5`.",
    )
)
