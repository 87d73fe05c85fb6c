"""Completion, from the text before the cursor (which, being typed, seldom parses): where a
stage starts, the operations, blocks and tensors in scope; after an operation, its
arguments' names; after `key=`, the values that parameter takes (the words of its
parameter model, the tables for `connect=`, the kernels for `fixed=`, the layers for
`tie=`). Names in scope come from the latest version of the document that parsed.

>>> context("    conv 6 5x5 | ")
Context(kind='stage', op=None, key=None)
>>> context("    conv 6 5x5 pad=")
Context(kind='value', op='conv', key='pad')
>>> context("    x = maxpool 2x2 st")
Context(kind='argument', op='maxpool', key=None)
>>> context("    add(body, sk")
Context(kind='call', op='add', key=None)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from lsprotocol import types

from netspec.lsp.documents import Snapshot
from netspec.lsp.index import Body, Symbol
from netspec.lsp.opinfo import REGISTRY, Param, parameters, signature
from netspec.syntax import ast

TOP_KEYWORDS = ("network", "block", "const", "table", "kernel", "use", "train")
BODY_KEYWORDS = ("repeat", "shared", "output")
_STRIP = re.compile(r'"[^"\n]*"?|#[^\n]*')  # strings and comments, out of the way
_ASSIGN = re.compile(r"^\s*[A-Za-z_]\w*\s*=(?!=)")
_REPEAT = re.compile(r"^\s*repeat\s+\S+\s+")


@dataclass(frozen=True)
class Context:
    kind: Literal["stage", "argument", "value", "call", "none"]
    op: str | None = None  # the operation or block being written
    key: str | None = None  # the parameter whose value is being written


def context(prefix: str) -> Context:
    """What is being written at the end of `prefix`, the line before the cursor."""
    if "#" in _STRIP.sub(lambda m: m[0] if m[0].startswith("#") else "", prefix):
        return Context("none")
    piece = re.split(r"[|{}]", prefix)[-1]
    opened = piece.rfind("(")
    if opened > piece.rfind(")"):
        callee = re.search(r"([A-Za-z_]\w*)\s*$", piece[:opened])
        return Context("call", callee[1] if callee else None)
    piece = _REPEAT.sub("", _ASSIGN.sub("", piece))
    words = piece.split()
    if not words or (len(words) == 1 and not piece[-1].isspace()):
        return Context("stage")
    value = re.search(r"([A-Za-z_]\w*)=([\w\[\].,-]*)$", piece)
    if value is not None:
        return Context("value", words[0], value[1])
    return Context("argument", words[0])


def _depth(text: str) -> int:
    """How many braces are open at the end of `text`."""
    bare = _STRIP.sub("", text)
    return bare.count("{") - bare.count("}")


def completions(snap: Snapshot, named: Snapshot, line: int, col: int) -> list[types.CompletionItem]:
    """What may be written at 1-based (line, col); `named` is the latest version of the
    document that parsed (netspec.lsp.documents.Documents.named), whose names are in scope."""
    prefix = snap.lines.line(line)[: col - 1]
    before = "\n".join([*snap.lines.lines[: line - 1], prefix])
    depth = _depth(before)
    body = named.index.body_at(named.file, line)
    in_train = re.search(r"(?m)^\s*train\b[^{]*\{[^}]*$", _STRIP.sub("", before)) is not None
    if in_train:
        return []
    if depth == 0:
        starting = not prefix.strip() or prefix.isidentifier()
        return [_keyword(k) for k in TOP_KEYWORDS] if starting else []
    ctx = context(prefix)
    if ctx.kind == "stage":
        return [*_stages(named, body, line), *(_keyword(k) for k in BODY_KEYWORDS)]
    if ctx.kind == "argument":
        return _arguments(ctx.op, prefix)
    if ctx.kind == "value":
        return _values(named, body, line, ctx.op, ctx.key)
    if ctx.kind == "call":
        return _call(named, body, line, ctx.op)
    return []


def _keyword(word: str) -> types.CompletionItem:
    return types.CompletionItem(label=word, kind=types.CompletionItemKind.Keyword)


def _op_item(name: str) -> types.CompletionItem:
    opdef = REGISTRY[name]
    return types.CompletionItem(
        label=name,
        kind=types.CompletionItemKind.Function,
        detail=signature(opdef),
        documentation=types.MarkupContent(types.MarkupKind.Markdown, opdef.doc),
    )


def _in_scope(body: Body | None, line: int) -> list[Symbol]:
    """The tensors and parameters of the body at `line`, those made above it."""
    if body is None:
        return []
    return [
        s
        for s in body.names.values()
        if s.kind in ("param", "input", "shared") or s.definition.line < line
    ]


def _stages(named: Snapshot, body: Body | None, line: int) -> list[types.CompletionItem]:
    items = [_op_item(name) for name in REGISTRY]
    for symbol in named.index.globals.values():
        if symbol.kind == "block":
            written = named.lines_of(symbol.definition.file).line(symbol.definition.line)
            items.append(
                types.CompletionItem(
                    label=symbol.name,
                    kind=types.CompletionItemKind.Class,
                    detail=written.strip().rstrip("{ "),
                    insert_text=f"{symbol.name}($1)",
                    insert_text_format=types.InsertTextFormat.Snippet,
                )
            )
    for symbol in _in_scope(body, line):
        if symbol.kind != "param":
            items.append(_name_item(symbol))
    return items


def _name_item(symbol: Symbol) -> types.CompletionItem:
    kind = types.CompletionItemKind.Variable
    if symbol.kind in ("const", "table", "kernel"):
        kind = types.CompletionItemKind.Constant
    return types.CompletionItem(label=symbol.name, kind=kind, detail=symbol.kind)


def _given(prefix: str) -> set[str]:
    return set(re.findall(r"([A-Za-z_]\w*)=", prefix.split("|")[-1]))


def _arg_item(p: Param) -> types.CompletionItem:
    detail = "positional" if p.positional else f"default {p.default}"
    if p.default is None and not p.positional:
        detail = "required"
    return types.CompletionItem(
        label=f"{p.name}=",
        kind=types.CompletionItemKind.Property,
        detail=detail + (f": {', '.join(p.words)}" if p.words else ""),
        insert_text=f"{p.name}=",
    )


def _arguments(op: str | None, prefix: str) -> list[types.CompletionItem]:
    opdef = REGISTRY.get(op or "")
    if opdef is None:
        return []
    given = _given(prefix)
    items = [_arg_item(p) for p in parameters(opdef) if p.name not in given]
    first = next((p for p in parameters(opdef) if p.positional), None)
    if first is not None:
        items += [_value_item(w, f"{op} {first.name}") for w in first.words]
    return items


def _value_item(word: str, detail: str) -> types.CompletionItem:
    return types.CompletionItem(label=word, kind=types.CompletionItemKind.EnumMember, detail=detail)


def _values(
    named: Snapshot, body: Body | None, line: int, op: str | None, key: str | None
) -> list[types.CompletionItem]:
    opdef = REGISTRY.get(op or "")
    param = next((p for p in parameters(opdef) if p.name == key), None) if opdef else None
    if param is None:
        return [_name_item(s) for s in _scope_values(named, body, line)]
    if param.words:
        return [_value_item(w, f"{op} {key}=") for w in param.words]
    wanted = {"connect": "table", "fixed": "kernel"}.get(param.name)
    globals_ = named.index.globals.values()
    if wanted is not None:
        names = [s.name for s in globals_ if s.kind == wanted]
        if param.name == "fixed":
            names = [f"[{n}]" for n in names]
        return [_value_item(n, f"{op} {key}=") for n in names]
    if param.name == "tie":
        return [_name_item(s) for s in _in_scope(body, line) if s.kind == "tensor"]
    return [_name_item(s) for s in _scope_values(named, body, line)]


def _scope_values(named: Snapshot, body: Body | None, line: int) -> list[Symbol]:
    """The names a number may be written as: constants and the block's parameters."""
    consts = [s for s in named.index.globals.values() if s.kind == "const"]
    return consts + [s for s in _in_scope(body, line) if s.kind == "param"]


def _call(
    named: Snapshot, body: Body | None, line: int, callee: str | None
) -> list[types.CompletionItem]:
    """Inside `name(`: a block's parameters and the values they may take; a merge's or a
    shared sub-network's tensors."""
    symbol = named.index.globals.get(callee or "")
    if symbol is not None and symbol.kind == "block":
        block = next((b for b in named.index.bodies if b.item.name == symbol.name), None)
        params = [] if block is None else [s for s in block.names.values() if s.kind == "param"]
        items = [
            types.CompletionItem(label=f"{p.name}=", kind=types.CompletionItemKind.Property)
            for p in params
        ]
        return items + [_name_item(s) for s in _scope_values(named, body, line)]
    tensors = [s for s in _in_scope(body, line) if s.kind in ("tensor", "input")]
    items = [_name_item(s) for s in tensors]
    if body is not None and isinstance(body.item, ast.Block):
        items.append(_keyword("in"))
    return items
