"""netspec's diagnostics as the protocol's: the same span, code, message and hint, each
note with a place as related information (the others appended to the message). A mistake
in a `use`d file is shown at the `use` that reads it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import Diagnostic, Span, display_path
from netspec.lsp.documents import Snapshot

_USE = re.compile(r'^[ \t]*use[ \t]+"([^"\n]*)"', re.MULTILINE)
_SEVERITY = {"error": types.DiagnosticSeverity.Error, "warning": types.DiagnosticSeverity.Warning}


@dataclass(frozen=True)
class Use:
    """A `use "path"` of the document: where it is written and the file it reads."""

    span: Span  # the quoted path
    path: str  # as written
    target: str | None  # the file, resolved as `load` resolves it; None without a directory


def uses(snap: Snapshot) -> list[Use]:
    """Every `use` written in the document."""
    found = []
    directory = Path(snap.file).parent if Path(snap.file).is_absolute() else None
    for m in _USE.finditer(snap.text):
        start = m.start(1) - 1
        line = snap.text.count("\n", 0, start) + 1
        col = start - (snap.text.rfind("\n", 0, start) + 1) + 1
        span = Span(snap.file, line, col, line, col + len(m[1]) + 2)
        target = str((directory / m[1]).resolve()) if directory is not None else None
        found.append(Use(span, m[1], target))
    return found


def publishable(snap: Snapshot, codec: PositionCodec) -> list[types.Diagnostic]:
    """The document's diagnostics, in the protocol's terms."""
    written = uses(snap)
    return [_convert(d, snap, written, codec) for d in snap.diagnostics]


def _place(span: Span, snap: Snapshot, written: list[Use]) -> tuple[Span, str]:
    """Where in the document a diagnostic shows, and what its message starts with: a
    mistake in another file sits on the `use` that reads it, naming where it is."""
    if span.file == snap.file or not written:
        return span, ""
    use = next((u for u in written if u.target == span.file), written[0])
    return use.span, f"{display_path(span.file)}:{span.line}:{span.col}: "


def _convert(
    d: Diagnostic, snap: Snapshot, written: list[Use], codec: PositionCodec
) -> types.Diagnostic:
    span, where = _place(d.span, snap, written)
    message = where + d.message
    if d.hint:
        message += f"\n{d.hint}"
    related = []
    for note in d.notes:
        if note.span is None or note.span.line < 1:
            message += f"\nnote: {note.message}"
            continue
        lines = snap.lines_of(note.span.file)
        location = types.Location(snap.uri_of(note.span.file), lines.range(note.span, codec))
        related.append(types.DiagnosticRelatedInformation(location, note.message))
    return types.Diagnostic(
        range=snap.lines.range(span, codec),
        message=message,
        severity=_SEVERITY[d.severity],
        code=d.code,
        source="netspec",
        related_information=related or None,
    )
