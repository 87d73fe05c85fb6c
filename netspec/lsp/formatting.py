"""Formatting: the document as `netspec fmt` writes it, as one edit of the whole text; no
edit when it does not parse (the diagnostics say why) or is formatted already."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import SpecError
from netspec.fmt import format_text
from netspec.lsp.documents import Snapshot


def format_edits(snap: Snapshot, codec: PositionCodec) -> list[types.TextEdit]:
    """The edits that format the document."""
    try:
        formatted = format_text(snap.text, snap.file)
    except SpecError:
        return []
    if formatted == snap.text:
        return []
    last = len(snap.lines.lines)
    whole = types.Range(start=types.Position(line=0, character=0), end=snap.lines.end(last, codec))
    return [types.TextEdit(range=whole, new_text=formatted)]
