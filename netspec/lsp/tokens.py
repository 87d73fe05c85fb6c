"""Semantic tokens: what each word of a spec is. The text is cut into words, numbers,
strings and comments; a name takes its kind from the index (a block, a tensor, a
parameter, a constant), else from where it stands (an operation, `key=`, a word value),
so that a spec that does not parse yet is still coloured.

>>> from netspec.lsp.documents import Snapshot
>>> from netspec.compiler import analyze
>>> text = "network n(x: 1x8x8) {\\n    conv 4 3x3 pad=same  # c\\n}\\n"
>>> snap = Snapshot("u", 1, text, "f", (analyze(text, file="f"),))
>>> lines = text.split("\\n")
>>> [(TYPES[t], lines[line][col : col + n]) for line, col, n, t, _ in tokens(snap)]
[('keyword', 'network'), ('class', 'n'), ('variable', 'x'), ('number', '1x8x8'), \
('function', 'conv'), ('number', '4'), ('number', '3x3'), ('property', 'pad'), \
('enumMember', 'same'), ('comment', '# c')]
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.lsp.documents import Snapshot
from netspec.lsp.index import Kind, Occurrence
from netspec.lsp.navigation import RESERVED
from netspec.ops import REGISTRY

TYPES = [
    "keyword",
    "function",
    "class",
    "variable",
    "parameter",
    "property",
    "number",
    "string",
    "comment",
    "enumMember",
]
MODIFIERS = ["declaration", "readonly", "defaultLibrary"]
LEGEND = types.SemanticTokensLegend(token_types=TYPES, token_modifiers=MODIFIERS)

_KIND_TYPE: dict[Kind, tuple[str, int]] = {  # (type, modifiers: 2 = readonly)
    "network": ("class", 0),
    "block": ("class", 0),
    "const": ("variable", 2),
    "table": ("variable", 2),
    "kernel": ("variable", 2),
    "tensor": ("variable", 0),
    "shared": ("function", 0),
    "param": ("parameter", 0),
    "input": ("variable", 0),
}
_WORD = re.compile(
    r'(?P<string>"[^"\n]*"?)|(?P<comment>#[^\n]*)'
    r"|(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:x(?:\d+|[A-Za-z_]\w*))*(?:deg|px|%)?)"
    r"|(?P<name>[A-Za-z_]\w*)"
)
Token = tuple[int, int, int, int, int]  # line, start, length (code points), type, modifiers


def tokens(snap: Snapshot) -> Iterator[Token]:
    """Every token of the document, 0-based lines and columns in code points."""
    index = snap.index
    named = {(o.span.line, o.span.col): o for o in index.occurrences if o.span.file == snap.file}
    stages = {(s.line, s.col) for s, _ in index.stages if s.file == snap.file}
    keys = {(s.line, s.col) for s in index.keys if s.file == snap.file}
    for row, line in enumerate(snap.lines.lines):
        for m in _WORD.finditer(line):
            kind = m.lastgroup or ""
            at = (row + 1, m.start() + 1)
            if kind == "name":
                found = _name(m[0], line, m.start(), named.get(at), at in stages, at in keys)
                if found is None:
                    continue
                kind, modifiers = found
            else:
                modifiers = 0
            yield row, m.start(), len(m[0]), TYPES.index(kind), modifiers


def _name(
    word: str, line: str, start: int, occurrence: Occurrence | None, stage: bool, key: bool
) -> tuple[str, int] | None:
    """A name's token type and modifiers, or None to leave it uncoloured."""
    if occurrence is not None:
        kind, modifiers = _KIND_TYPE[occurrence.symbol.kind]
        return kind, modifiers | (1 if occurrence.declaration else 0)
    if word in RESERVED:
        return "keyword", 0
    after = line[start + len(word) :].lstrip()
    before = line[:start].rstrip()
    if key or (after.startswith("=") and not after.startswith("==") and before):
        return "property", 0
    if before.endswith("."):
        return "property", 0
    if word in REGISTRY and (stage or not before.endswith("=")):
        return "function", 4
    if before.endswith("="):
        return "enumMember", 0
    return None


def encode(snap: Snapshot, codec: PositionCodec) -> types.SemanticTokens:
    """The tokens as the protocol sends them: deltas, in the client's units."""
    data: list[int] = []
    last_line = last_start = 0
    for row, start, length, kind, modifiers in tokens(snap):
        line = snap.lines.lines[row]
        col = codec.client_num_units(line[:start])
        size = codec.client_num_units(line[start : start + length])
        delta = row - last_line
        data += [delta, col - last_start if delta == 0 else col, size, kind, modifiers]
        last_line, last_start = row, col
    return types.SemanticTokens(data=data)
