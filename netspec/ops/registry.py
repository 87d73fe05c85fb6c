"""The one registry of operations.

Each operation is declared once, as an `OpDef`: its parameter model, its shape,
receptive-field and cost rules, and every fact the rest of netspec asks about it
(how many inputs it merges, whether it has weights `tie=` may share, what a
network's output means when it is the last operation, whether CUDA training
should lay its input out channels-last, what each output position is computed
from, whether it is an activation, a head (and how ONNX Runtime decodes what it
outputs, and the `train` section's loss it trains with), or may pass its input
through, what a fully convolutional network has in its place or why it has none), so that
nothing elsewhere needs to test an operation's name: tests/test_registry_facts.py
fails when a test of `node.op` against a name, or a collection of names, appears
outside `netspec/ops/`. A spec can name only what is registered here; the
PyTorch builders live in `netspec.lower`, keyed by the same names, so that nothing before
lowering imports torch. No list names the modules of either half: `netspec.ops.discover`
imports every module of `netspec/ops/` (in the order of their names, which is the
registry's), and `netspec.lower.discover` collects the ``BUILDERS`` of every module of
`netspec/lower/`.

A new operation touches two files of code, plus its documentation and a test:

1. `netspec/ops/pointwise.py`, `netspec/ops/spatial.py` or another module of
   `netspec/ops/`, new or not: its parameter model and one `register(OpDef(...))` with
   its rules and facts (the fields of `OpDef` below: every one left out has the default
   it documents);
2. `netspec/lower/builders.py`, or a module of `netspec/lower/` of its own: one entry in
   that module's `BUILDERS`, returning the `Lowered` description of its module
   (netspec.lower.lowered; with `inline=` for an operation the emitted Python writes as an
   expression, like `add`); a new module class goes in `netspec/lower/layers.py` (define
   `fans()` there for `init=`) or beside its builder;
3. `docs/language.md`: its entry (tests/test_language_doc.py checks it);
4. tests: a snippet in `OP_SNIPPETS` (tests/test_lower.py), which makes
   tests/test_lower.py and tests/test_registry.py lower, emit and export it and
   match its inferred shape (and one in `INIT_SNIPPETS` if it takes `init=`);
   tests/test_registry.py fails until the declaration, the builder and the
   snippet all exist, and tests/test_registry_facts.py checks the facts it
   declares about positions against its PyTorch module.

A new kind of head is its operation in a module of its own (`head=True`, its `decoding`
and the `loss` it trains with: a `HeadLoss`, whose parameter model the `train` section
checks), its torch half with its `BUILDERS` in a module of `netspec/lower/` (its
`Lowered.decode` appends its decoding to the exported graph), its task module in
`netspec/tasks/`, its decoder module in `netspec/runtime/decoders/`, and its entry in
docs/language.md: `ssd` is netspec/ops/ssd.py, netspec/lower/ssd.py, netspec/tasks/ssd.py
and netspec/runtime/decoders/ssd.py (tests/test_head_files.py adds one the same way).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from netspec.artifact import Decoding
from netspec.errors import NetspecError
from netspec.ir import Dim, OpParams, Shape
from netspec.text import fmt_shape


class ShapeError(NetspecError):
    """A shape rule's refusal; `infer` turns it into a diagnostic at the node's span."""


@dataclass(frozen=True)
class RF:
    """Receptive field along (H, W): size, jump (stride product) and centre of the first unit.

    A 1-D signal (C x L) keeps its one axis in the W slot and `line` set; H stays 1.
    """

    size: tuple[float, float] = (1, 1)
    jump: tuple[float, float] = (1, 1)
    start: tuple[float, float] = (0.5, 0.5)
    whole: bool = False  # sees the whole input (dense layers, global pooling, reshapes)
    # sees a region of the input that the data chooses (after RoI pooling): the region's bin
    # (or, with `whole`, the whole region) grown by `size`, the backbone's field, at `jump`
    region: bool = False
    line: bool = False  # the network's input is a 1-D signal: only the W slot moves

    @property
    def axes(self) -> tuple[int, ...]:
        """The slots a window moves along: (1,) for a signal, (0, 1) for feature maps."""
        return (1,) if self.line else (0, 1)


@dataclass(frozen=True)
class Cost:
    params: int = 0  # trainable
    fixed: int = 0  # constant values from the spec (fixed kernels, RBF prototypes)
    macs: int | None = 0  # None when a symbolic size makes it unknown


# What a network's output means when this operation comes last. "pass": whatever the
# operation before it decides (identity, dropout, flatten); at the input, plain logits.
# Any other value is an output kind of the file format (`netspec.artifact.KINDS`): a class
# scores kind, or a head's kind, which the runtime decoder reading it registers
# (tests/test_registry.py checks every operation's against them).
OutputMeaning = str

# What each output position is computed from, for an operation of one input: what the fully
# convolutional conversion (netspec.export.fcn_graph) asks.
#   "elementwise"  each value from the same input value alone (activations, scale, batchnorm
#                  and dropout at inference);
#   "pointwise"    from the values at the same position, channels mixing (softmax, lrn,
#                  channel_shuffle);
#   "sliding"      from a window of positions, with the same weights at every position
#                  (conv, the pools, subsample): a fully convolutional network slides it as
#                  it is, where it pads nothing.
# None (the default) is anything else: a dense stage, a reshape, a kernel per position, a
# normalization over the whole map, a merge (`OpDef.merges` says that).
Locality = Literal["elementwise", "pointwise", "sliding"]

ShapeRule = Callable[[Any, Sequence[Shape]], Shape]
RFRule = Callable[[Any, Sequence[RF]], RF]
# A receptive-field rule that needs the input shapes too (a crop's offset, adaptive windows).
SizedRFRule = Callable[[Any, Sequence[RF], Sequence[Shape]], RF]
CostRule = Callable[[Any, Sequence[Shape], Shape], Cost]
# What an operation that flattens maps is where maps stay maps (a fully convolutional
# network): the operation and parameters in its place, given the H x W of the maps it reads,
# (1, 1) after an earlier dense stage. A dense stage is the convolution with that kernel and
# its own weights; a flatten is the identity.
OnMapsRule = Callable[[Any, tuple[int, int]], tuple[str, OpParams]]
# How ONNX Runtime turns a head's output into boxes: the file's `decoding` (the name of a
# decoder in netspec.runtime.decoders and its parameters), from the head node's parameters,
# its output shape and receptive field, and the network input's per-sample shape; None
# where a symbolic size leaves it unknown.
DecodingRule = Callable[[Any, Shape, RF, Shape], Decoding | None]
# The parameters an operation's builder is given where its numbers come from where its inputs
# sit, never written by hand (a RoI pooling's spatial scale from its map's jump, proposals'
# anchor centres from the map's jump and start, and the input's size they are clipped to):
# from the node's parameters, its inputs' receptive fields and shapes and the network input's
# per-sample shape. May refuse with a ShapeError (anchors larger than the input).
PlacedRule = Callable[[Any, Sequence[RF], Sequence[Shape], Shape], OpParams]


class LossParams(BaseModel):
    """Base of a head's loss parameter model (`HeadLoss.params`): frozen, no unknown keys,
    finite numbers, as every model of the `train` section."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


@dataclass(frozen=True)
class HeadLoss:
    """The `train` section's loss a head brings: `loss NAME key=value ...`, its parameters
    checked by `params` where the section is (netspec.passes.train) and read back by the
    head's task from `Loss.params` (`loss ssd match=0.6`, netspec.ops.ssd)."""

    name: str
    params: type[LossParams]


def _rf_same(p: Any, rfs: Sequence[RF]) -> RF:
    return rfs[0]


def _no_cost(p: Any, ins: Sequence[Shape], out: Shape) -> Cost:
    return Cost()


@dataclass(frozen=True)
class OpDef:
    """One operation: its parameters, its rules, and the facts other passes ask about it."""

    name: str
    params: type[OpParams]
    shape: ShapeRule
    doc: str
    positional: tuple[str, ...] = ()
    variadic: bool = False  # the last positional parameter takes every remaining value
    arity: int | None = 1  # number of inputs; None for merges (two or more)
    rf: RFRule = _rf_same
    sized_rf: SizedRFRule | None = None  # replaces `rf` where the rule needs input shapes
    cost: CostRule = _no_cost
    weighted: bool = False  # has trainable parameters that `tie=` may share
    output: OutputMeaning = "logits"  # what the network's output means when this op is last
    channels_last: bool = False  # a convolution-like op: CUDA training lays its input NHWC
    channels_last_cpu: bool = False  # and its NHWC kernels are faster on the CPU too (oneDNN)
    # ---- facts about positions: the fully convolutional conversion, `show`, the probe
    locality: Locality | None = None  # what each output position is computed from (above)
    # Where that depends on the parameters (`layernorm channels` is pointwise, `layernorm`
    # over the whole sample is not): the rule from them, said in place of `locality`.
    locality_of: Callable[[Any], Locality | None] | None = None
    activation: bool = False  # an elementwise nonlinearity: `show` draws the maps it rectifies
    # Each output is one of the values it reads (a max): the gradient reaches only the one
    # picked, so `show`'s receptive-field twin sums them instead.
    selects: bool = False
    kernels: bool = False  # slides kernels over its input's maps that `show` can draw
    # Its output's channels are bins of unsigned gradient orientation (HOG): each bin's centre
    # in degrees from the parameters, which `show` draws as HOG's glyphs.
    orientations: Callable[[Any], tuple[float, ...]] | None = None
    on_maps: OnMapsRule | None = None  # what a fully convolutional network has in its place
    # Why a fully convolutional network cannot slide it, where there is more to say than
    # that it has no sliding-window form.
    refusal: str | None = None
    # May return its input tensor itself (identity, dropout at inference, `project` where
    # the shapes agree, a flatten or reshape that changes nothing): the ONNX export then
    # gives it no tensor of its own, and the probe reads its input's.
    passes_through: bool = False
    head: bool = False  # decodes the network's raw output (`detect`): what `kinds` looks for
    decoding: DecodingRule | None = None  # a head's: what export writes as the file's decoding
    loss: HeadLoss | None = None  # a head's: the `train` section's loss that trains it
    # ---- sets of regions (netspec.passes.regions): a RoI set is K boxes of each image
    makes_rois: bool = False  # its output is a RoI set (`proposals`)
    # its last input must be a RoI set, its others image maps, and its output's leading axis
    # counts the set's regions: what follows is applied per region (`roi_pool`)
    reads_rois: bool = False
    placed: PlacedRule | None = None  # what its builder is given in place of its parameters

    def receptive_field(self, p: Any, rfs: Sequence[RF], ins: Sequence[Shape]) -> RF:
        """The node's receptive field from its inputs' (and, where needed, their shapes)."""
        return self.rf(p, rfs) if self.sized_rf is None else self.sized_rf(p, rfs, ins)

    def locality_for(self, p: Any) -> Locality | None:
        """What each output position of a node with parameters `p` is computed from."""
        return self.locality if self.locality_of is None else self.locality_of(p)

    @property
    def merges(self) -> bool:
        """Takes two or more tensors (`add(a, b)`, or a block of branches)."""
        return self.arity != 1

    @property
    def takes_init(self) -> bool:
        """Accepts `init=` (its parameter model has the field)."""
        return "init" in self.params.model_fields


REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    assert opdef.name not in REGISTRY, opdef.name
    REGISTRY[opdef.name] = opdef
    return opdef


def merge_names() -> tuple[str, ...]:
    """The operations that merge tensors, in declaration order: `('add', 'concat', 'distance')`."""
    return tuple(name for name, opdef in REGISTRY.items() if opdef.merges)


def head_losses() -> dict[str, HeadLoss]:
    """The `train` section's losses that the registered heads bring, by name, in declaration
    order (those the section knows itself are netspec.passes.train's)."""
    found = [opdef.loss for opdef in REGISTRY.values() if opdef.loss is not None]
    return {loss.name: loss for loss in found}


def channels_last_helps(ops: Iterable[str], device: str = "cuda") -> bool:
    """Whether a network of these operations trains faster channels-last on ``device``: on
    CUDA when it has a convolution-like op, on the CPU when every one it has is fast NHWC."""
    like = [REGISTRY[op] for op in ops if REGISTRY[op].channels_last]
    return bool(like) and (device == "cuda" or all(d.channels_last_cpu for d in like))


# ---- parameter types shared by several operations --------------------------------


def _pair(v: Any) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return (v, v)
    if isinstance(v, tuple) and len(v) == 1:
        return (v[0], v[0])
    return v


def _pad(v: Any) -> Any:
    return v if isinstance(v, str) else _pair(v)


Pos = Annotated[int, Field(gt=0, strict=True)]
NonNeg = Annotated[int, Field(ge=0, strict=True)]
Pair = Annotated[tuple[Pos, Pos], BeforeValidator(_pair)]
PadPair = Annotated[tuple[NonNeg, NonNeg], BeforeValidator(_pair)]
Padding = Annotated[Literal["same", "valid"] | PadPair, BeforeValidator(_pad)]
Init = Literal["default", "lecun", "kaiming", "xavier"]
Matrix = tuple[tuple[float, ...], ...]


# ---- arithmetic on sizes that may be symbolic -------------------------------------


def numel(shape: Shape) -> int | None:
    total = 1
    for d in shape:
        if not isinstance(d, int):
            return None
        total *= d
    return total


def _sym(d: Dim) -> str:
    return d if isinstance(d, str) and d.isidentifier() else f"({d})"


# A symbolic size's last term, where it is a whole number added or taken away (`W-2`,
# `(H-8)//8+1`): a binary + or - (after a name, a number or a bracket) ends the expression.
_CONSTANT_TERM = re.compile(r"(?P<rest>.*[\w)])(?P<term>[+-]\d+)")


def shifted(size: Dim, by: int) -> Dim:
    """``size + by``, with a symbolic size's constant term folded in: `W-2` shifted by 2 is
    `W` again, so that a valid convolution padded back to its input's size has that size
    (`concat` and `add` compare symbolic sizes as written)."""
    if isinstance(size, int):
        return size + by
    if by == 0:
        return size
    found = _CONSTANT_TERM.fullmatch(size)
    if found is None:
        return f"{_sym(size)}{by:+d}"
    total = int(found["term"]) + by
    return found["rest"] if total == 0 else f"{found['rest']}{total:+d}"


def window_out(
    size: Dim, kernel: int, stride: int, pad: tuple[int, int], dilation: int = 1, ceil: bool = False
) -> Dim:
    """Output length of a sliding window: floor((n + pads - d(k-1) - 1) / s) + 1."""
    reach = dilation * (kernel - 1) + 1
    if isinstance(size, str):
        if stride == 1 and sum(pad) == reach - 1:
            return size
        if stride == 1:
            return f"{_sym(size)}{sum(pad) - reach + 1:+d}"
        return f"({_sym(size)}{sum(pad) - reach:+d})//{stride}+1"
    span = size + sum(pad) - reach
    if span < 0:
        raise ShapeError(
            f"the window ({kernel} wide, reach {reach}) is larger than the input ({size})",
            hint="use a smaller kernel, padding, or a larger input",
        )
    out = -(-span // stride) + 1 if ceil else span // stride + 1
    if ceil and (out - 1) * stride >= size + pad[0]:
        out -= 1  # the last window must start inside the input (PyTorch's rule)
    return out


def same_pad(kernel: int, dilation: int, stride: int) -> tuple[int, int]:
    reach = dilation * (kernel - 1)
    if stride != 1:
        raise ShapeError(
            "pad=same needs stride 1",
            hint=f"give pad={reach // 2} instead"
            + (", which divides the size by the stride, rounded up" if reach % 2 == 0 else ""),
        )
    if reach % 2:
        raise ShapeError(
            f"pad=same needs an odd kernel (this one is {kernel})",
            hint="give an explicit pad= instead",
        )
    return (reach // 2, reach // 2)


def resolve_pad(
    pad: Any, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
    """Per-axis (low, high) padding from `same`, `valid` or explicit numbers."""
    if pad == "same":
        return (
            same_pad(kernel[0], dilation[0], stride[0]),
            same_pad(kernel[1], dilation[1], stride[1]),
        )
    if pad == "valid":
        return ((0, 0), (0, 0))
    return ((pad[0], pad[0]), (pad[1], pad[1]))


def _not_maps(shape: Shape) -> str:
    """Why a tensor of `shape` is not feature maps: flattened, or given a batch axis."""
    if len(shape) > 3:
        return (
            f"a shape is one sample's, without the batch axis: C x H x W, "
            f"e.g. {fmt_shape(shape[-3:])}"
        )
    return "a flat vector has no positions: spatial operations go before a dense stage or flatten"


def spatial(shape: Shape, op: str) -> tuple[Dim, Dim, Dim]:
    if len(shape) != 3:
        hint = (
            f"{op} works on 2-D feature maps only; a 1-D signal takes conv, the pools, "
            "pad, crop and the pointwise operations"
            if len(shape) == 2
            else _not_maps(shape)
        )
        raise ShapeError(f"{op} needs feature maps (C x H x W), got {fmt_shape(shape)}", hint=hint)
    return shape[0], shape[1], shape[2]


def maps_or_signal(shape: Shape, op: str) -> tuple[Dim, tuple[Dim, ...]]:
    """(channels, spatial sizes) of C x H x W feature maps or of a 1-D signal C x L."""
    if len(shape) not in (2, 3):
        raise ShapeError(
            f"{op} needs feature maps (C x H x W) or a signal (C x L), got {fmt_shape(shape)}",
            hint=_not_maps(shape),
        )
    return shape[0], tuple(shape[1:])


def one_number(pair: tuple[int, int], what: str) -> int:
    """A 1-D signal's kernel, stride or dilation: one number (`7`, or a square `7x7`)."""
    if pair[0] != pair[1]:
        raise ShapeError(
            f"on a 1-D signal (C x L) the {what} is one number, got {pair[0]}x{pair[1]}",
            hint=f"write the {what} along the signal alone, e.g. {pair[1]}",
        )
    return pair[1]


def window_sizes(
    dims: tuple[Dim, ...],
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    dilation: tuple[int, int] = (1, 1),
    ceil: bool = False,
) -> tuple[Dim, ...]:
    """Output sizes of a window sliding over (H, W), or over a signal's one axis (L)."""
    if len(dims) == 1:
        one_number(kernel, "kernel")
        one_number(stride, "stride")
        one_number(dilation, "dilation")
        return (window_out(dims[0], kernel[1], stride[1], pads[1], dilation[1], ceil),)
    return tuple(
        window_out(dims[i], kernel[i], stride[i], pads[i], dilation[i], ceil) for i in range(2)
    )


def window_rf(
    rf: RF,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    pad: tuple[tuple[int, int], tuple[int, int]],
    dilation: tuple[int, int] = (1, 1),
) -> RF:
    """The classic recurrence: r += (k-1)·d·j; start += ((k-1)·d/2 - pad)·j; j *= s."""
    if rf.whole:
        return rf
    size, jump, start = list(rf.size), list(rf.jump), list(rf.start)
    for i in rf.axes:
        reach = (kernel[i] - 1) * dilation[i]
        size[i] += reach * rf.jump[i]
        start[i] += (reach / 2 - pad[i][0]) * rf.jump[i]
        jump[i] *= stride[i]
    return replace(rf, size=(size[0], size[1]), jump=(jump[0], jump[1]), start=(start[0], start[1]))


def rf_whole(p: Any, rfs: Sequence[RF]) -> RF:
    return replace(rfs[0], whole=True)


def rf_merge(p: Any, rfs: Sequence[RF]) -> RF:
    if any(r.whole for r in rfs):
        return next(r for r in rfs if r.whole)
    size = (max(r.size[0] for r in rfs), max(r.size[1] for r in rfs))
    return replace(rfs[0], size=size)


def macs_of(out: Shape, per_output: int) -> int | None:
    n = numel(out)
    return None if n is None else n * per_output
