"""Merges: operations of two or more tensors, written `add(a, b)` or as a group of branches.

`add` and `mul` broadcast a gate: a `Cx1x1` (or `1x1x1`) operand spreads over every
position of a `CxHxW` one, as a squeeze-and-excitation block multiplies its feature maps
by one learned weight per map. A vector of C values (a dense stage's output) is the same
gate, over `CxHxW` maps or a `CxL` signal: it is read as `Cx1x1` (or `Cx1`), the
`y.view(b, c, 1, 1)` of every SE tutorial. That is netspec's rule, not PyTorch's, which
lines a vector up with the last axis (W), not with the channels. Every other merge needs
equal shapes, and any other mismatch is refused with both shapes named.

MACs, one per multiply-add: `add` and `mul` one per output per input after the first (a
gate's product is one multiply per output), `sub` and `distance` one per output, `mean`
one per output per input (the adds, then the 1/n scale). That is ptflops's count for
`torch.add` and `torch.mul` (one per output element); fvcore counts no elementwise
arithmetic. `max` compares and `concat` copies: nothing, as for pooling.
"""

from __future__ import annotations

from collections.abc import Sequence

from netspec.ir import OpParams, Shape
from netspec.ops.pointwise import NoParams
from netspec.ops.registry import (
    Cost,
    CostRule,
    OpDef,
    ShapeError,
    ShapeRule,
    macs_of,
    register,
    rf_merge,
)
from netspec.text import fmt_shape

_SAME_HINT = (
    "merged branches must have the same shape; project one of them "
    "(e.g. a 1x1 conv with the right stride)"
)


def _is_gate(shape: Shape) -> bool:
    """A `Cx1x1` tensor: one value per feature map."""
    return len(shape) == 3 and shape[1] == 1 and shape[2] == 1


def _spreads(gate: Shape, over: Shape) -> bool:
    """`gate` broadcasts over `over`: a `Cx1x1` over `CxHxW`, a vector `C` over maps or a
    signal of C channels; C may be 1."""
    spreads = (_is_gate(gate) and len(over) == 3) or (len(gate) == 1 and len(over) > 1)
    return spreads and gate[0] in (1, over[0])


def _widest(shape: Shape) -> tuple[int, bool, int]:
    """What the others spread over: the most axes, maps before a gate, the widest gate."""
    channels = shape[0] if _is_gate(shape) and isinstance(shape[0], int) else 0
    return (len(shape), not _is_gate(shape), channels)


def _mismatch(verb: str, a: Shape, b: Shape, broadcast: bool) -> ShapeError:
    hint = _SAME_HINT
    if broadcast and _is_gate(a) != _is_gate(b) and len(a) == len(b):
        maps = b if _is_gate(a) else a
        hint = f"a Cx1x1 gate spreads over maps of its own C ({maps[0]}), or C = 1"
    elif broadcast and min(len(a), len(b)) == 1 and max(len(a), len(b)) > 1:
        maps = a if len(a) > 1 else b
        hint = f"a gate of one value per map has {maps[0]} values here (dense {maps[0]}), or 1"
    return ShapeError(f"cannot {verb} tensors of shapes {fmt_shape(a)} and {fmt_shape(b)}", hint)


def _equal_shapes(verb: str) -> ShapeRule:
    """The shape rule of a merge whose inputs must all have one shape."""

    def rule(p: OpParams, ins: Sequence[Shape]) -> Shape:
        for other in ins[1:]:
            if other != ins[0]:
                raise _mismatch(verb, ins[0], other, broadcast=False)
        return ins[0]

    return rule


def _broadcast_shapes(verb: str) -> ShapeRule:
    """Equal shapes, or gates (`Cx1x1`, `1x1x1`, a vector of C) beside maps `CxHxW` or a
    signal `CxL`: the result is the maps' (or the signal's)."""

    def rule(p: OpParams, ins: Sequence[Shape]) -> Shape:
        at = max(range(len(ins)), key=lambda i: _widest(ins[i]))
        full = ins[at]
        for i, other in enumerate(ins):
            if other != full and not _spreads(other, full):
                first, second = (other, full) if i < at else (full, other)
                raise _mismatch(verb, first, second, broadcast=True)
        return full

    return rule


def _per_output(per_input: int, offset: int) -> CostRule:
    """`per_input * len(ins) + offset` MACs per output."""
    return lambda p, ins, out: Cost(macs=macs_of(out, per_input * len(ins) + offset))


def _concat_hint(a: Shape, b: Shape) -> str:
    """Maps of one rank whose sizes differ by a few units, not by a stride's factor: name the
    crop that makes the larger fit (U-Net's skip connections, after unpadded convolutions)."""
    same = "give every branch the same stride and padding"
    pairs = list(zip(a[1:], b[1:], strict=False))
    if len(a) != len(b) or not pairs or not all(_near(x, y) for x, y in pairs):
        return same
    small = "x".join(str(min(int(x), int(y))) for x, y in pairs)
    return f"{same}, or centre-crop the larger to fit: `crop {small}` (as U-Net does)"


def _near(x: object, y: object) -> bool:
    """Two numeric sizes, the larger less than twice the smaller."""
    return isinstance(x, int) and isinstance(y, int) and max(x, y) < 2 * min(x, y)


def _concat_shape(p: OpParams, ins: Sequence[Shape]) -> Shape:
    rest = ins[0][1:]
    for other in ins[1:]:
        if other[1:] != rest or len(other) != len(ins[0]):
            raise ShapeError(
                f"cannot concatenate {fmt_shape(ins[0])} and {fmt_shape(other)}: "
                "all but the feature-map axis must agree",
                hint=_concat_hint(ins[0], other),
            )
    channels = [s[0] for s in ins]
    if not all(isinstance(c, int) for c in channels):
        raise ShapeError("concatenated tensors need numeric channel counts")
    return (sum(int(c) for c in channels), *rest)


register(
    OpDef(
        name="add",
        params=NoParams,
        shape=_broadcast_shapes("add"),
        arity=None,
        rf=rf_merge,
        cost=_per_output(1, -1),
        doc="Elementwise sum of two or more tensors of one shape (residual connections); "
        "a Cx1x1 operand, or a vector of C, is added at every position.",
    )
)
register(
    OpDef(
        name="concat",
        params=NoParams,
        shape=_concat_shape,
        arity=None,
        rf=rf_merge,
        doc="Stacks the feature maps of two or more tensors (Inception, DenseNet).",
    )
)
register(
    OpDef(
        name="distance",
        params=NoParams,
        shape=_equal_shapes("take the distance between"),
        arity=2,
        rf=rf_merge,
        cost=_per_output(0, 1),
        doc="Elementwise absolute difference |a - b| (siamese networks).",
    )
)
register(
    OpDef(
        name="mul",
        params=NoParams,
        shape=_broadcast_shapes("multiply"),
        arity=None,
        rf=rf_merge,
        cost=_per_output(1, -1),
        doc="Elementwise product of two or more tensors (gating); a Cx1x1 gate, or a vector "
        "of C, scales each feature map (squeeze-and-excitation).",
    )
)
register(
    OpDef(
        name="sub",
        params=NoParams,
        shape=_equal_shapes("subtract"),
        arity=2,
        rf=rf_merge,
        cost=_per_output(0, 1),
        doc="Elementwise difference a - b of exactly two tensors of one shape.",
    )
)
register(
    OpDef(
        name="mean",
        params=NoParams,
        shape=_equal_shapes("average"),
        arity=None,
        rf=rf_merge,
        cost=_per_output(1, 0),
        doc="Elementwise average of two or more tensors of one shape (branches, ensembles).",
    )
)
register(
    OpDef(
        name="max",
        params=NoParams,
        shape=_equal_shapes("take the maximum of"),
        arity=None,
        rf=rf_merge,
        selects=True,
        doc="Elementwise maximum of two or more tensors of one shape (maxout across branches).",
    )
)
