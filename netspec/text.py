"""Small text helpers every layer shares; nothing here imports anything heavy.

>>> fmt_shape((1, 28, 28))
'1x28x28'
>>> fmt_shape((8, "H-2", "W-2"))
'8x(H-2)x(W-2)'
>>> first_line(ValueError("bad value\\nmore detail"))
'bad value'
>>> first_line(KeyError())
'KeyError'
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["UNBOUND_SIZE", "bound_shape", "first_line", "fmt_shape"]

# The size a symbolic H or W takes when something must be built or traced at a concrete
# size (ONNX export, benchmarks); the exported file keeps such an axis dynamic.
UNBOUND_SIZE = 32


def bound_shape(shape: Iterable[int | str], unbound: int = UNBOUND_SIZE) -> tuple[int, ...]:
    """``shape`` with each symbolic size (a name) replaced by ``unbound``: the one place that
    says what size a symbolic axis takes when something must be made at a concrete size.

    >>> bound_shape((3, "H", "W"))
    (3, 32, 32)
    """
    return tuple(d if isinstance(d, int) else unbound for d in shape)


def fmt_shape(shape: Iterable[object]) -> str:
    """A per-sample shape as the spec writes it: `16x5x5`; a symbolic size that is more
    than a name is parenthesized, so that its `x` and its arithmetic do not run together.

    >>> fmt_shape((32, "(H-1)//2+1", "W"))
    '32x((H-1)//2+1)xW'
    """
    return "x".join(_dim(d) for d in shape)


def _dim(d: object) -> str:
    text = str(d)
    return text if text.isidentifier() or text.isdigit() else f"({text})"


def first_line(e: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
