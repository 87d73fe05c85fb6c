"""Where things are, in both counts: netspec's spans (1-based lines and columns in code
points, end exclusive, lines split at `\\n` alone as Lark counts them) and the protocol's
positions (0-based, columns in the client's units: UTF-16 unless it chose another).

>>> lines = Lines("a = 1\\nb = 'é😀x'\\n")
>>> utf16 = PositionCodec()
>>> lines.to_client(2, 8, utf16)  # after the emoji: one code point, two UTF-16 units
1:8
>>> lines.from_client(Position(line=1, character=8), utf16)
(2, 8)
"""

from __future__ import annotations

from lsprotocol.types import Position, Range
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import Span


class Lines:
    """One text's lines, to convert between spans and protocol positions."""

    def __init__(self, text: str) -> None:
        self.lines = [line.rstrip("\r") for line in text.split("\n")]

    def line(self, number: int) -> str:
        """Line `number` (1-based) without its end; "" past the end."""
        return self.lines[number - 1] if 1 <= number <= len(self.lines) else ""

    def to_client(self, line: int, col: int, codec: PositionCodec) -> Position:
        """The protocol position of 1-based (line, col), clamped to the text."""
        row = min(max(line, 1), len(self.lines)) - 1
        text = self.lines[row]
        chars = text[: max(col - 1, 0)]
        return Position(line=row, character=codec.client_num_units(chars))

    def from_client(self, pos: Position, codec: PositionCodec) -> tuple[int, int]:
        """The 1-based (line, col) of a protocol position, clamped to the text."""
        row = min(max(pos.line, 0), len(self.lines) - 1)
        text = self.lines[row]
        if text.isascii():
            return row + 1, min(pos.character, len(text)) + 1
        units = 0
        for i, ch in enumerate(text):
            if units >= pos.character:
                return row + 1, i + 1
            units += codec.client_num_units(ch)
        return row + 1, len(text) + 1

    def range(self, span: Span, codec: PositionCodec) -> Range:
        """The protocol range of a span of this text."""
        return Range(
            start=self.to_client(span.line, span.col, codec),
            end=self.to_client(span.end_line, span.end_col, codec),
        )

    def end(self, line: int, codec: PositionCodec) -> Position:
        """The position after the last character of 1-based `line`."""
        return self.to_client(line, len(self.line(line)) + 1, codec)


def contains(span: Span, line: int, col: int) -> bool:
    """Whether 1-based (line, col) lies in the span, its end included (a cursor right after
    a word is on the word)."""
    if (line, col) < (span.line, span.col):
        return False
    return (line, col) <= (span.end_line, span.end_col)


def span_size(span: Span) -> tuple[int, int]:
    """A span's extent, to pick the innermost of several that contain a position."""
    return (span.end_line - span.line, span.end_col - span.col)
