"""Inlay hints: at the end of each line that makes layers, the shape of what it outputs
(the last node the line makes; a block's line, expanded many times, lists its shapes)."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.lsp.documents import Snapshot
from netspec.lsp.facts import shapes_of
from netspec.text import fmt_shape

ARROW = "→ "
MAX_SHAPES = 3  # distinct shapes shown on one line; the rest are counted


def label(shapes: list[str], expansions: int) -> str:
    """`→ 6x14x14`; `→ 64x56x56 | 128x28x28 | … (16 expansions)` for a block's line.

    >>> label(["8x4x4"], 1)
    '→ 8x4x4'
    >>> label(["a", "b", "c", "d"], 5)
    '→ a | b | c | … (5 expansions)'
    """
    shown = " | ".join(shapes[:MAX_SHAPES])
    if len(shapes) > MAX_SHAPES:
        shown += " | …"
    if expansions > 1 and len(shapes) > 1:
        shown += f" ({expansions} expansions)"
    return ARROW + shown


def inlay_hints(
    snap: Snapshot, first: int, last: int, codec: PositionCodec
) -> list[types.InlayHint]:
    """The hints of 1-based lines `first` to `last`."""
    hints = []
    for line, made in snap.facts.line_outputs(snap.file).items():
        if not first <= line <= last:
            continue
        shapes = [fmt_shape(s) for s in shapes_of(made)]
        if not shapes:
            continue
        hints.append(
            types.InlayHint(
                position=snap.lines.end(line, codec),
                label=label(shapes, len(made)),
                kind=types.InlayHintKind.Type,
                padding_left=True,
            )
        )
    return hints
