"""Go to definition, find references and rename, over the names of netspec/lsp/index.py,
and go to a `use`d file."""

from __future__ import annotations

import re
from pathlib import Path

from lsprotocol import types
from pygls.exceptions import JsonRpcInvalidParams
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import Span
from netspec.lsp.diagnostics import uses
from netspec.lsp.documents import Snapshot, uri_of
from netspec.lsp.index import Occurrence
from netspec.lsp.positions import contains
from netspec.ops import REGISTRY
from netspec.syntax.parser import KEYWORDS

# Words a name may not take: the grammar's keywords and the words inside statements.
RESERVED = frozenset({*KEYWORDS, "repeat", "as", "on", "augment", "in"})
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _location(snap: Snapshot, span: Span, codec: PositionCodec) -> types.Location:
    return types.Location(snap.uri_of(span.file), snap.lines_of(span.file).range(span, codec))


def definition(snap: Snapshot, line: int, col: int, codec: PositionCodec) -> types.Location | None:
    """Where the name at 1-based (line, col) is defined; the file a `use` reads."""
    for use in uses(snap):
        if use.target is not None and contains(use.span, line, col):
            if not Path(use.target).exists() and use.target not in snap.sources.texts:
                return None
            start = types.Position(line=0, character=0)
            return types.Location(uri_of(use.target), types.Range(start=start, end=start))
    occurrence = snap.index.at(snap.file, line, col)
    if occurrence is None:
        return None
    return _location(snap, occurrence.symbol.definition, codec)


def references(
    snap: Snapshot, line: int, col: int, declaration: bool, codec: PositionCodec
) -> list[types.Location]:
    """Every place the name at 1-based (line, col) is written, in every file read."""
    occurrence = snap.index.at(snap.file, line, col)
    if occurrence is None:
        return []
    return [
        _location(snap, o.span, codec)
        for o in snap.index.of(occurrence.symbol)
        if declaration or not o.declaration
    ]


def prepare_rename(snap: Snapshot, line: int, col: int, codec: PositionCodec) -> types.Range | None:
    """The name at 1-based (line, col), if it can be renamed."""
    occurrence = snap.index.at(snap.file, line, col)
    return None if occurrence is None else snap.lines.range(occurrence.span, codec)


def rename(
    snap: Snapshot, line: int, col: int, new: str, codec: PositionCodec
) -> types.WorkspaceEdit | None:
    """Every place the name at 1-based (line, col) is written, renamed to `new`; an invalid
    or taken name is refused with a message the editor shows."""
    occurrence = snap.index.at(snap.file, line, col)
    if occurrence is None:
        return None
    _check(snap, occurrence, new)
    changes: dict[str, list[types.TextEdit]] = {}
    for o in snap.index.of(occurrence.symbol):
        location = _location(snap, o.span, codec)
        changes.setdefault(location.uri, []).append(types.TextEdit(location.range, new))
    return types.WorkspaceEdit(changes=changes)


def _check(snap: Snapshot, occurrence: Occurrence, new: str) -> None:
    symbol = occurrence.symbol
    if not _NAME.fullmatch(new):
        raise JsonRpcInvalidParams(f"'{new}' is not a name: letters, digits and _")
    if new in RESERVED or new in REGISTRY:
        raise JsonRpcInvalidParams(f"'{new}' is a word of the language or an operation")
    taken = set(snap.index.globals)
    if symbol.scope is not None:
        body = next((b for b in snap.index.bodies if b.key == symbol.scope[:2]), None)
        taken |= set(body.names) if body is not None else set()
    if new in taken and new != symbol.name:
        raise JsonRpcInvalidParams(f"'{new}' is already defined here")
