"""Dense stages, the RBF output, batch and response normalization, dropout, the first
activations, and the residual shortcut. Merges live in `netspec.ops.merges`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import Field

from netspec.ir import OpParams, Shape
from netspec.ops.registry import (
    Cost,
    Init,
    OpDef,
    OutputMeaning,
    Pos,
    ShapeError,
    ShapeRule,
    macs_of,
    maps_or_signal,
    numel,
    register,
    rf_whole,
    spatial,
    window_out,
    window_rf,
)
from netspec.text import fmt_shape


class NoParams(OpParams):
    pass


def _same_shape(p: OpParams, ins: Sequence[Shape]) -> Shape:
    return ins[0]


def _flat_size(shape: Shape, op: str) -> int:
    n = numel(shape)
    if n is None:
        raise ShapeError(
            f"{op} needs a fixed input size, got {fmt_shape(shape)}",
            hint="bind the symbolic size with --set, or pool globally before it",
        )
    return n


# ---- dense stages -------------------------------------------------------------------


class DenseParams(OpParams):
    units: Pos
    bias: bool = True
    init: Init = "default"


def _vector_shape(field: str, op: str) -> ShapeRule:
    """Shape rule of a stage that flattens its input into `field` units."""

    def rule(p: OpParams, ins: Sequence[Shape]) -> Shape:
        _flat_size(ins[0], op)
        return (int(getattr(p, field)),)

    return rule


def _dense_cost(p: DenseParams, ins: Sequence[Shape], out: Shape) -> Cost:
    n = _flat_size(ins[0], "dense")
    return Cost(params=n * p.units + (p.units if p.bias else 0), macs=n * p.units)


def _dense_on_maps(p: DenseParams, kernel: tuple[int, int]) -> tuple[str, OpParams]:
    """A dense stage over C x H x W maps is the convolution with an H x W kernel (its weights,
    reshaped); over a vector, a 1 x 1 one."""
    # Imported here: importing netspec.ops.spatial registers its operations, and the
    # registry keeps the order of netspec/ops/__init__.py.
    from netspec.ops.spatial import ConvParams

    return "conv", ConvParams(channels=p.units, kernel=kernel, bias=p.bias, init=p.init)


register(
    OpDef(
        name="dense",
        params=DenseParams,
        positional=("units",),
        shape=_vector_shape("units", "dense"),
        rf=rf_whole,
        cost=_dense_cost,
        weighted=True,
        on_maps=_dense_on_maps,
        doc="A dense (fully connected) stage: every unit sees everything. It flattens its input.",
    )
)


class RbfParams(OpParams):
    classes: Pos
    prototypes: Literal["lenet5", "random"] = "lenet5"


register(
    OpDef(
        name="rbf",
        params=RbfParams,
        positional=("classes",),
        shape=_vector_shape("classes", "rbf"),
        rf=rf_whole,
        output="rbf_distances",
        refusal="the RBF output gives distances, not class scores a detector can threshold",
        cost=lambda p, ins, out: Cost(
            fixed=_flat_size(ins[0], "rbf") * p.classes, macs=_flat_size(ins[0], "rbf") * p.classes
        ),
        doc="Euclidean RBF output (LeNet-5): y_j = sum_i (x_i - w_ij)^2 with fixed prototypes; "
        "the smallest output is the predicted class.",
    )
)

register(
    OpDef(
        name="flatten",
        params=NoParams,
        shape=lambda p, ins: (_flat_size(ins[0], "flatten"),),
        output="pass",
        on_maps=lambda p, kernel: ("identity", NoParams()),
        passes_through=True,
        doc="Flattens feature maps into one vector.",
    )
)


# ---- normalization and dropout ------------------------------------------------------


class BatchNormParams(OpParams):
    eps: Annotated[float, Field(gt=0)] = 1e-5
    momentum: Annotated[float, Field(ge=0, le=1)] = 0.1


register(
    OpDef(
        name="batchnorm",
        params=BatchNormParams,
        shape=_same_shape,
        cost=lambda p, ins, out: Cost(params=2 * int(ins[0][0]), macs=macs_of(out, 1)),
        weighted=True,
        locality="elementwise",
        doc="Batch normalization over each feature map (or each unit after a dense stage).",
    )
)


class LrnParams(OpParams):
    size: Pos = 5
    alpha: float = 1e-4
    beta: float = 0.75
    k: float = 2.0


def _lrn_shape(p: LrnParams, ins: Sequence[Shape]) -> Shape:
    spatial(ins[0], "lrn")
    return ins[0]


register(
    OpDef(
        name="lrn",
        params=LrnParams,
        shape=_lrn_shape,
        cost=lambda p, ins, out: Cost(macs=macs_of(out, p.size)),
        locality="pointwise",
        doc="Local response normalization across neighbouring feature maps (AlexNet).",
    )
)


class DropoutParams(OpParams):
    p: Annotated[float, Field(ge=0, lt=1)] = 0.5


register(
    OpDef(
        name="dropout",
        params=DropoutParams,
        positional=("p",),
        shape=_same_shape,
        output="pass",
        locality="elementwise",
        passes_through=True,
        doc="Dropout: zeroes units with probability p while training.",
    )
)


# ---- activations ----------------------------------------------------------------------

_ACTIVATIONS: tuple[tuple[str, str, OutputMeaning], ...] = (
    ("relu", "max(0, x).", "logits"),
    ("tanh", "Hyperbolic tangent.", "logits"),
    ("sigmoid", "The logistic function.", "sigmoid"),
    ("scaled_tanh", "LeCun's scaled tanh: 1.7159 * tanh(2x/3).", "logits"),
)


def register_activations(table: Sequence[tuple[str, str, OutputMeaning]]) -> None:
    """One parameterless, elementwise activation for each (name, doc, output meaning)."""
    for name, doc, output in table:
        register(
            OpDef(
                name=name,
                params=NoParams,
                shape=_same_shape,
                doc=doc,
                output=output,
                locality="elementwise",
                activation=True,
            )
        )


register_activations(_ACTIVATIONS)
register(
    OpDef(
        name="identity",
        params=NoParams,
        shape=_same_shape,
        doc="Passes its input through.",
        output="pass",
        locality="elementwise",
        passes_through=True,
    )
)


class LeakyParams(OpParams):
    slope: float = 0.01


class EluParams(OpParams):
    alpha: float = 1.0


class SoftmaxParams(OpParams):
    pass


register(
    OpDef(
        name="leaky_relu",
        params=LeakyParams,
        positional=("slope",),
        shape=_same_shape,
        locality="elementwise",
        activation=True,
        doc="max(0, x) + slope * min(0, x).",
    )
)
register(
    OpDef(
        name="elu",
        params=EluParams,
        positional=("alpha",),
        shape=_same_shape,
        locality="elementwise",
        activation=True,
        doc="Exponential linear unit.",
    )
)
register(
    OpDef(
        name="softmax",
        params=SoftmaxParams,
        shape=_same_shape,
        output="probabilities",
        locality="pointwise",
        doc="Softmax over the features (or over the feature maps, per position).",
    )
)


# ---- residual shortcuts ---------------------------------------------------------------


class ProjectParams(OpParams):
    channels: Pos
    stride: Pos = 1


def _project_shape(p: ProjectParams, ins: Sequence[Shape]) -> Shape:
    """Maps (C x H x W) and signals (C x L) keep their positions, one in `stride` a side; a
    vector (C) has none, so its projection is a dense stage without bias, and no stride."""
    if len(ins[0]) == 1:
        if p.stride != 1:
            raise ShapeError(
                f"project on a vector ({fmt_shape(ins[0])}) has no positions to stride over "
                f"(stride={p.stride})",
                hint=f"leave the stride out: project({p.channels})",
            )
        return (p.channels,)
    _, sizes = maps_or_signal(ins[0], "project")
    return (p.channels, *(window_out(d, 1, p.stride, (0, 0)) for d in sizes))


def project_is_identity(p: ProjectParams, in_shape: Shape) -> bool:
    return p.stride == 1 and in_shape[0] == p.channels


def _project_cost(p: ProjectParams, ins: Sequence[Shape], out: Shape) -> Cost:
    if project_is_identity(p, ins[0]):
        return Cost()
    cin = int(ins[0][0])
    m = macs_of(out, cin + 1)  # the 1x1 convolution, then one per element for its batchnorm
    return Cost(params=cin * p.channels + 2 * p.channels, macs=m)


register(
    OpDef(
        name="project",
        params=ProjectParams,
        positional=("channels", "stride"),
        shape=_project_shape,
        cost=_project_cost,
        weighted=True,
        passes_through=True,
        rf=lambda p, rfs: window_rf(rfs[0], (1, 1), (p.stride, p.stride), ((0, 0), (0, 0))),
        doc="A residual shortcut: the identity when the shapes already agree, else a 1x1 "
        "convolution with the given stride (no bias) and batch normalization; on a signal a "
        "1-D one, on a vector a dense stage without bias.",
    )
)
