"""Document symbols: the outline of a spec. Networks with their inputs and named tensors,
blocks with their parameters and named tensors, train sections, constants, tables and
kernels, in the order they are written."""

from __future__ import annotations

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import Span
from netspec.lsp.documents import Snapshot
from netspec.lsp.index import GLOBAL_KINDS, Kind
from netspec.syntax import ast

SYMBOL_KINDS: dict[Kind, types.SymbolKind] = {
    "network": types.SymbolKind.Class,
    "block": types.SymbolKind.Function,
    "const": types.SymbolKind.Constant,
    "table": types.SymbolKind.Constant,
    "kernel": types.SymbolKind.Constant,
    "tensor": types.SymbolKind.Variable,
    "shared": types.SymbolKind.Object,
    "param": types.SymbolKind.TypeParameter,
    "input": types.SymbolKind.Variable,
}


def _detail(item: ast.Item) -> str:
    if isinstance(item, ast.Network):
        inputs = ", ".join(f"{i.name}: {'x'.join(map(str, i.shape))}" for i in item.inputs)
        return f"network ({inputs})"
    if isinstance(item, ast.Block):
        return f"block ({', '.join(p.name for p in item.params)})"
    return type(item).__name__.lower()


def document_symbols(snap: Snapshot, codec: PositionCodec) -> list[types.DocumentSymbol]:
    """The outline of the document's own definitions."""
    index, lines = snap.index, snap.lines
    found = []
    for item in snap.first.items or []:
        if item.span.file != snap.file or item.span not in index.names:
            continue
        name_span = index.names[item.span]
        if isinstance(item, ast.Train):
            name, kind = f"train {item.network} on {item.dataset}", types.SymbolKind.Event
        elif isinstance(item, ast.Use):
            continue
        else:
            name, kind = item.name, SYMBOL_KINDS[GLOBAL_KINDS[type(item)]]
        children = _children(snap, item, codec) if isinstance(item, ast.Network | ast.Block) else []
        found.append(
            types.DocumentSymbol(
                name=name,
                kind=kind,
                range=lines.range(_covering(item.span, name_span), codec),
                selection_range=lines.range(name_span, codec),
                detail=_detail(item),
                children=children or None,
            )
        )
    return found


def _covering(span: Span, inner: Span) -> Span:
    """`span` grown to hold `inner` (a symbol's range must hold its selection range)."""
    start = min((span.line, span.col), (inner.line, inner.col))
    end = max((span.end_line, span.end_col), (inner.end_line, inner.end_col))
    return Span(span.file, *start, *end)


def _children(
    snap: Snapshot, item: ast.Network | ast.Block, codec: PositionCodec
) -> list[types.DocumentSymbol]:
    body = next((b for b in snap.index.bodies if b.item is item), None)
    if body is None:
        return []
    symbols = sorted(body.names.values(), key=lambda s: (s.definition.line, s.definition.col))
    return [
        types.DocumentSymbol(
            name=s.name,
            kind=SYMBOL_KINDS[s.kind],
            range=snap.lines.range(s.definition, codec),
            selection_range=snap.lines.range(s.definition, codec),
            detail=s.kind,
        )
        for s in symbols
    ]
