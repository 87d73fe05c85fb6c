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

import re
from collections.abc import Iterable

__all__ = ["UNBOUND_SIZE", "bound_shape", "first_line", "fmt_shape", "literal"]

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


# What a terminal must not be handed raw: C0 and C1 control characters and DEL (but not
# newline and tab), and the invisible characters that reorder or hide text: the bidi
# embeddings, overrides, isolates and marks (Trojan Source, CVE-2021-42574), zero-width
# spaces and joiners, the soft hyphen, the line and paragraph separators, the BOM.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u206f\ufeff\ufff9-\ufffb]"
)


def literal(text: str) -> str:
    r"""``text`` safe for a terminal: every character of `_UNSAFE` written as a visible
    escape, so that nothing in a spec, a label or a file name can drive the terminal or
    show other text than it holds. The one function every printed user text goes through.

    >>> literal("red \x1b[31m, bell \x07, tab\tok")
    'red \\x1b[31m, bell \\x07, tab\tok'
    >>> literal("abc\u202edef\u200b")
    'abc\\u202edef\\u200b'
    """
    return _UNSAFE.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
