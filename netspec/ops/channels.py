"""Choosing feature maps: `slice`, and the words `split` and `chunk` that give several.

`slice 0..58` keeps maps 0 to 57 (`x[:, 0:58]` in PyTorch): the range is half-open, as a
Python slice is, so `slice a..b` keeps b - a maps, and the slices `0..58` and `58..116`
split 116 maps in two without overlap. It reads the first axis of each sample: the
feature maps of C x H x W maps or of a C x L signal, the features of a vector.

`a, b = split 58` and `a, b = chunk 2` are PyTorch's `torch.split(x, 58, 1)` and
`torch.chunk(x, 2, 1)`: they give several tensors, which the graph does not have (each
node has one output), so the expander writes each result as one `slice` node named after
it. `SEVERAL` maps each word to the rule that gives the sizes of its pieces, refusing
what does not fit the maps it is given.

The receptive field is kept exactly: a unit of map 60 sees the window it saw before the
slice, so ShuffleNet's units keep their sizes and jumps where a reshape would give `all`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pydantic import model_validator

from netspec.ir import Dim, OpParams, Shape
from netspec.ops.registry import NonNeg, OpDef, ShapeError, register
from netspec.text import fmt_shape


def _pair(value: Any) -> tuple[Any, Any] | None:
    """`0..58` as the evaluator gives it (an interval: `low`, `high`), or an (a, b) pair."""
    low, high = getattr(value, "low", None), getattr(value, "high", None)
    if low is not None and high is not None:
        return (low, high)
    if isinstance(value, tuple) and len(value) == 2:
        return (value[0], value[1])
    return None


class SliceParams(OpParams):
    """`slice 0..58`: the maps from `channels[0]` up to, not including, `channels[1]`."""

    channels: tuple[NonNeg, NonNeg]

    @model_validator(mode="before")
    @classmethod
    def _range(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "channels" not in data:
            return data
        pair = _pair(data["channels"])
        if pair is None:
            raise ValueError(
                "slice takes a range of maps, a..b (half-open, as x[:, a:b] in PyTorch): "
                "slice 0..58 keeps maps 0 to 57"
            )
        return {**data, "channels": pair}

    @model_validator(mode="after")
    def _order(self) -> SliceParams:
        low, high = self.channels
        if high <= low:
            raise ValueError(
                f"slice {low}..{high} keeps no maps: the end is not past the start "
                f"(a..b keeps maps a to b-1)"
            )
        return self


def _channels(shape: Shape, word: str) -> int:
    """The number of maps (a signal's channels, a vector's features) a word divides."""
    if not shape:
        raise ShapeError(f"{word} needs maps or features to choose from, got a scalar")
    c = shape[0]
    if not isinstance(c, int):
        raise ShapeError(
            f"{word} needs a known number of maps, got {fmt_shape(shape)}",
            hint="bind the symbolic size with --set",
        )
    return c


def _slice_shape(p: SliceParams, ins: Sequence[Shape]) -> Shape:
    c = _channels(ins[0], "slice")
    low, high = p.channels
    if high > c:
        raise ShapeError(
            f"slice {low}..{high} needs {high} maps, got {c} ({fmt_shape(ins[0])})",
            hint=f"the maps are 0..{c}; a..b keeps maps a to b-1",
        )
    dims: tuple[Dim, ...] = (high - low, *ins[0][1:])
    return dims


register(
    OpDef(
        name="slice",
        params=SliceParams,
        positional=("channels",),
        shape=_slice_shape,
        output="pass",
        locality="pointwise",
        doc="Keeps the feature maps a to b-1 (`slice 0..58`, x[:, 0:58] in PyTorch); the "
        "receptive field is kept.",
    )
)


# ---- split and chunk: several results, each one slice ---------------------------------------


def _whole(value: Any, word: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShapeError(f"{word} takes whole numbers from 1, got {value!r}")
    return value


def split_sizes(arg: Any, shape: Shape) -> tuple[int, ...]:
    """`split 58`: pieces of 58 maps, the last one smaller where 58 does not divide them
    (`torch.split`); `split [24, 40]`: pieces of those sizes, which must add up to the maps."""
    c = _channels(shape, "split")
    if isinstance(arg, tuple):
        sizes = tuple(_whole(v, "split") for v in arg)
        if sum(sizes) != c:
            listed = " + ".join(map(str, sizes))
            raise ShapeError(
                f"split [{', '.join(map(str, sizes))}] gives {listed} = {sum(sizes)} maps, "
                f"but its input has {c} ({fmt_shape(shape)})",
                hint=f"the sizes must add up to {c}",
            )
        return sizes
    size = _whole(arg, "split")
    return (size,) * (c // size) + ((c % size,) if c % size else ())


def chunk_sizes(arg: Any, shape: Shape) -> tuple[int, ...]:
    """`chunk 2`: two pieces of equal size. PyTorch's `torch.chunk` also takes a count that
    does not divide the maps (giving uneven pieces, or fewer); netspec refuses it."""
    c, n = _channels(shape, "chunk"), _whole(arg, "chunk")
    if c % n:
        raise ShapeError(
            f"chunk {n} needs a number of maps that {n} divides, got {c} ({fmt_shape(shape)})",
            hint="give the sizes instead: split [a, b], which add up to the maps",
        )
    return (c // n,) * n


# The words that give several tensors, each with the rule for the sizes of its pieces.
SEVERAL: dict[str, Callable[[Any, Shape], tuple[int, ...]]] = {
    "split": split_sizes,
    "chunk": chunk_sizes,
}


def slices(sizes: Sequence[int]) -> tuple[SliceParams, ...]:
    """The `slice` of each piece, in order: sizes 58, 58 are 0..58 and 58..116."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return tuple(
        SliceParams(channels=(start, start + size))
        for start, size in zip(starts, sizes, strict=True)
    )
