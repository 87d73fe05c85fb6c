"""The names of a spec and every place each is written, from the AST: what definition,
references, rename, semantic tokens, completion and document symbols ask.

Constants, tables, kernels, blocks and networks are global to a compilation; tensors
(named results, aliases, inputs, shared sub-networks) and a block's parameters belong to
the body that defines them. Where the AST keeps no span of a name (a block's name after
`block`, an alias after `as`), it is found in the text, right where the grammar puts it.

>>> from netspec.compiler import analyze
>>> a = analyze("const k = 4\\nnetwork n(x: 1x8x8) {\\n    y = conv k 3x3\\n    y | relu\\n}\\n")
>>> index = build(a.items or [], a.sources.texts)
>>> [(o.symbol.kind, o.symbol.name, o.span.line, o.span.col, o.declaration)
...  for o in index.occurrences]
[('const', 'k', 1, 7, True), ('network', 'n', 2, 9, True), ('input', 'x', 2, 11, True), \
('tensor', 'y', 3, 5, True), ('const', 'k', 3, 14, False), ('tensor', 'y', 4, 5, False)]
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from netspec.diagnostics import Span
from netspec.lsp.positions import contains, span_size
from netspec.syntax import ast

Kind = Literal["network", "block", "const", "table", "kernel", "tensor", "shared", "param", "input"]
GLOBAL_KINDS: dict[type[ast.Node], Kind] = {
    ast.Const: "const",
    ast.Table: "table",
    ast.Kernel: "kernel",
    ast.Block: "block",
    ast.Network: "network",
}


@dataclass(frozen=True)
class Symbol:
    """A name and what it names. `scope` is None for a global name, else the body (a
    network, block or shared sub-network) it belongs to."""

    kind: Kind
    name: str
    scope: tuple[str, ...] | None
    definition: Span


@dataclass(frozen=True)
class Occurrence:
    span: Span
    symbol: Symbol
    declaration: bool


@dataclass(frozen=True)
class Body:
    """One network's or block's text and the names it may use."""

    key: tuple[str, ...]
    item: ast.Network | ast.Block
    names: dict[str, Symbol]  # tensors, inputs, shared sub-networks, parameters


@dataclass
class Index:
    """Every name of a compilation and every place it is written, in every file read."""

    globals: dict[str, Symbol] = field(default_factory=dict)
    bodies: list[Body] = field(default_factory=list)
    occurrences: list[Occurrence] = field(default_factory=list)
    stages: list[tuple[Span, str]] = field(default_factory=list)  # operation names written
    keys: list[Span] = field(default_factory=list)  # `stride` of `stride=2`
    names: dict[Span, Span] = field(default_factory=dict)  # a definition's span -> its name's

    def at(self, file: str, line: int, col: int) -> Occurrence | None:
        """The name written at 1-based (line, col) of `file`, if any."""
        found = [o for o in self.occurrences if o.span.file == file and contains(o.span, line, col)]
        return min(found, key=lambda o: span_size(o.span)) if found else None

    def of(self, symbol: Symbol) -> list[Occurrence]:
        """Every place `symbol` is written, its definition included."""
        return [o for o in self.occurrences if o.symbol == symbol]

    def body_at(self, file: str, line: int) -> Body | None:
        """The network or block whose text holds `line` of `file`."""
        for body in self.bodies:
            span = body.item.span
            if span.file == file and span.line <= line <= span.end_line:
                return body
        return None


class _Finder:
    """Finds a name's span in the text where the AST keeps none."""

    def __init__(self, texts: Mapping[str, str]) -> None:
        self.texts = texts
        self._starts: dict[str, list[int]] = {}

    def _offset(self, file: str, line: int, col: int) -> int:
        starts = self._starts.get(file)
        if starts is None:
            text = self.texts.get(file, "")
            starts = [0] + [m.end() for m in re.finditer("\n", text)]
            self._starts[file] = starts
        return starts[min(max(line, 1), len(starts)) - 1] + col - 1

    def after(self, span: Span, name: str, skip: int = 0) -> Span:
        """The first `name`, as a whole word, from `skip` characters into `span` (the span's
        start when the text does not hold it there)."""
        text = self.texts.get(span.file, "")
        start = self._offset(span.file, span.line, span.col) + skip
        m = re.compile(rf"(?<![\w.]){re.escape(name)}(?!\w)").search(text, start)
        if m is None:
            return Span(span.file, span.line, span.col, span.line, span.col + len(name))
        line = text.count("\n", 0, m.start()) + 1
        col = m.start() - (text.rfind("\n", 0, m.start()) + 1) + 1
        return Span(span.file, line, col, line, col + len(name))


def name_at_start(span: Span, name: str) -> Span:
    """A name that starts its node's span (`x` of `x = ...`, a parameter, an input)."""
    return Span(span.file, span.line, span.col, span.line, span.col + len(name))


def alias_span(stage: ast.Op | ast.Call | ast.Group) -> Span:
    """The NAME of `... as NAME`, which ends its stage's span."""
    alias = stage.alias or ""
    s = stage.span
    return Span(s.file, s.end_line, s.end_col - len(alias), s.end_line, s.end_col)


def build(items: Iterable[ast.Item], texts: Mapping[str, str]) -> Index:
    """The index of every definition and name written in `items`."""
    items = list(items)
    index = Index()
    finder = _Finder(texts)
    defined: list[ast.Network | ast.Block | ast.Const] = []
    for item in items:
        kind = GLOBAL_KINDS.get(type(item))
        if kind is None or isinstance(item, ast.Use | ast.Train):
            continue
        span = index.names[item.span] = finder.after(item.span, item.name, len(kind))
        symbol = index.globals.setdefault(item.name, Symbol(kind, item.name, None, span))
        index.occurrences.append(Occurrence(span, symbol, True))
        if isinstance(item, ast.Network | ast.Block | ast.Const):
            defined.append(item)
    for item in defined:  # every global name is known before any body is read
        if isinstance(item, ast.Const):
            _Walker(index, finder, None).value(item.value, {})
        else:
            _Walker(index, finder, item).walk()
    for item in items:
        if isinstance(item, ast.Train):
            _train(index, finder, item)
    index.occurrences.sort(key=lambda o: (o.span.file, o.span.line, o.span.col))
    return index


def _train(index: Index, finder: _Finder, item: ast.Train) -> None:
    span = index.names[item.span] = finder.after(item.span, item.network, len("train"))
    network = index.globals.get(item.network)
    if network is not None and network.kind == "network":
        index.occurrences.append(Occurrence(span, network, False))


class _Walker:
    """Walks one network's or block's body: its names first, then every use of a name."""

    def __init__(self, index: Index, finder: _Finder, item: ast.Network | ast.Block | None):
        self.index, self.finder, self.item = index, finder, item

    def walk(self) -> None:
        item = self.item
        assert item is not None
        key = (item.span.file, item.name)
        names: dict[str, Symbol] = {}
        if isinstance(item, ast.Block):
            for p in item.params:
                self._declare(names, key, "param", p.name, name_at_start(p.span, p.name))
        else:
            for i in item.inputs:
                self._declare(names, key, "input", i.name, name_at_start(i.span, i.name))
        self.index.bodies.append(Body(key, item, names))
        if isinstance(item, ast.Block):
            for p in item.params:
                if isinstance(p.default, ast.Chain):  # a stage: `act=leaky_relu 0.2`
                    self.chain(p.default, names)
                elif p.default is not None:
                    self.value(p.default, names)
        self.body(item.body, key, names)

    def _declare(
        self, names: dict[str, Symbol], key: tuple[str, ...], kind: Kind, name: str, span: Span
    ) -> None:
        symbol = names.get(name)
        if symbol is None:
            symbol = names[name] = Symbol(kind, name, key, span)
        self.index.occurrences.append(Occurrence(span, symbol, symbol.definition == span))

    def _refer(self, symbol: Symbol | None, span: Span) -> None:
        if symbol is not None:
            self.index.occurrences.append(Occurrence(span, symbol, False))

    def body(
        self, body: tuple[ast.Statement, ...], key: tuple[str, ...], names: dict[str, Symbol]
    ) -> None:
        """Declare the body's tensors first (a name may be read above where it is made, in a
        merge), then walk its statements."""
        for st in body:
            self._names(st, key, names)
        for st in body:
            self.statement(st, key, names)

    def _names(self, st: ast.Statement, key: tuple[str, ...], names: dict[str, Symbol]) -> None:
        if isinstance(st, ast.Assign):
            span = name_at_start(st.span, st.target)
            names.setdefault(st.target, Symbol("tensor", st.target, key, span))
            self._aliases(st.chain, key, names)
        elif isinstance(st, ast.Unpack):
            for target in st.targets:
                names.setdefault(target.name, Symbol("tensor", target.name, key, target.span))
            self._aliases(st.chain, key, names)
        elif isinstance(st, ast.Shared):
            span = self.finder.after(st.span, st.name, len("shared"))
            names.setdefault(st.name, Symbol("shared", st.name, key, span))
        elif isinstance(st, ast.ChainStmt):
            self._aliases(st.chain, key, names)

    def _aliases(self, chain: ast.Chain, key: tuple[str, ...], names: dict[str, Symbol]) -> None:
        for stage in _stages(chain):
            if not isinstance(stage, ast.Repeat) and stage.alias is not None:
                span = alias_span(stage)
                names.setdefault(stage.alias, Symbol("tensor", stage.alias, key, span))

    def statement(self, st: ast.Statement, key: tuple[str, ...], names: dict[str, Symbol]) -> None:
        if isinstance(st, ast.Assign):
            span = name_at_start(st.span, st.target)
            self.index.occurrences.append(
                Occurrence(span, names[st.target], names[st.target].definition == span)
            )
            self.chain(st.chain, names)
        elif isinstance(st, ast.ChainStmt):
            self.chain(st.chain, names)
        elif isinstance(st, ast.Unpack):
            for target in st.targets:
                symbol = names[target.name]
                self.index.occurrences.append(
                    Occurrence(target.span, symbol, symbol.definition == target.span)
                )
            self.chain(st.chain, names)
        elif isinstance(st, ast.Shared):
            span = self.finder.after(st.span, st.name, len("shared"))
            self.index.occurrences.append(Occurrence(span, names[st.name], True))
            inner = {n: s for n, s in names.items() if s.kind == "param"}
            self.body(st.body, (*key, st.name), inner)
        else:
            for name in st.names:
                self._refer(names.get(name.name), name.span)

    def chain(self, chain: ast.Chain, names: dict[str, Symbol]) -> None:
        for stage in chain.stages:
            self.stage(stage, names)

    def stage(self, stage: ast.Stage, names: dict[str, Symbol]) -> None:
        if isinstance(stage, ast.Repeat):
            self.value(stage.count, names)
            self.stage(stage.stage, names)
            return
        if isinstance(stage, ast.Group):
            self.index.stages.append((stage.name_span, stage.name))
            for branch in stage.branches:
                self.chain(branch, names)
        else:
            self._named(stage, names)
        if stage.alias is not None:
            symbol = names.get(stage.alias)
            span = alias_span(stage)
            if symbol is not None:
                self.index.occurrences.append(Occurrence(span, symbol, symbol.definition == span))

    def _named(self, stage: ast.Op | ast.Call, names: dict[str, Symbol]) -> None:
        local = names.get(stage.name)
        target = local if local is not None and local.kind != "param" else None
        if target is None:
            target = self.index.globals.get(stage.name)
            target = target if target is not None and target.kind == "block" else None
        if target is not None:
            self._refer(target, stage.name_span)
        else:
            self.index.stages.append((stage.name_span, stage.name))
        for arg in stage.args:
            if arg.name is not None:
                self.index.keys.append(name_at_start(arg.span, arg.name))
            if isinstance(arg.value, ast.Chain):
                self.chain(arg.value, names)
            else:
                self.value(arg.value, names)

    def value(self, value: ast.Value, names: dict[str, Symbol]) -> None:
        if isinstance(value, ast.Name):
            self._refer(names.get(value.name) or self.index.globals.get(value.name), value.span)
        elif isinstance(value, ast.BinOp):
            self.value(value.left, names)
            self.value(value.right, names)
        elif isinstance(value, ast.Neg):
            self.value(value.operand, names)
        elif isinstance(value, ast.ListValue):
            for item in value.items:
                self.value(item, names)
        elif isinstance(value, ast.Size):
            for dim in value.dims:
                if not isinstance(dim, int):
                    self.value(dim, names)
        elif isinstance(value, ast.Range):
            self.value(value.low, names)
            self.value(value.high, names)


def _stages(chain: ast.Chain) -> Iterable[ast.Stage]:
    """Every stage of a chain, inside repeats, groups and merge arguments too."""
    for stage in chain.stages:
        yield stage
        inner: ast.Stage = stage
        while isinstance(inner, ast.Repeat):
            inner = inner.stage
            yield inner
        if isinstance(inner, ast.Group):
            for branch in inner.branches:
                yield from _stages(branch)
        elif isinstance(inner, ast.Op | ast.Call):
            for arg in inner.args:
                if isinstance(arg.value, ast.Chain):
                    yield from _stages(arg.value)
