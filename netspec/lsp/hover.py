"""Hover: what a layer or a call makes (output shape, receptive field, parameters, MACs,
what it was expanded from), what an operation does, what a name is."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from lsprotocol import types
from pygls.workspace.position_codec import PositionCodec

from netspec.diagnostics import Span, display_path
from netspec.lsp.documents import Snapshot
from netspec.lsp.facts import Made, instances
from netspec.lsp.index import Occurrence
from netspec.lsp.opinfo import REGISTRY, signature
from netspec.passes.infer import Layer
from netspec.text import fmt_shape

MAX_ROWS = 12  # expansions listed in one hover; the rest are counted


def word_at(line: str, col: int) -> tuple[str, int] | None:
    """The name under 1-based column `col` (or right before it) and where it starts."""
    for m in re.finditer(r"[A-Za-z_]\w*", line):
        if m.start() < col <= m.end() + 1:
            return m[0], m.start() + 1
    return None


def hover(snap: Snapshot, line: int, col: int, codec: PositionCodec) -> types.Hover | None:
    """The hover at 1-based (line, col) of the document, None where there is nothing."""
    parts: list[str] = []
    made = snap.facts.at(snap.file, line, col)
    if made:
        parts.append(made_text(made, snap))
    occurrence = snap.index.at(snap.file, line, col)
    if occurrence is not None:
        parts.append(symbol_text(occurrence, snap))
    word = word_at(snap.lines.line(line), col)
    if occurrence is None and word is not None and word[0] in REGISTRY:
        parts.append(op_text(word[0]))
    if not parts:
        return None
    return types.Hover(
        contents=types.MarkupContent(types.MarkupKind.Markdown, "\n\n---\n\n".join(parts))
    )


def op_text(name: str) -> str:
    """An operation's signature and documentation."""
    opdef = REGISTRY[name]
    return f"```netspec\n{signature(opdef)}\n```\n{opdef.doc}"


def symbol_text(occurrence: Occurrence, snap: Snapshot) -> str:
    """What a name is and where it is defined."""
    symbol = occurrence.symbol
    where = _where(symbol.definition, snap)
    uses = sum(not o.declaration for o in snap.index.of(symbol))
    used = {0: "not used", 1: "used once"}.get(uses, f"used {uses} times")
    return f"{symbol.kind} `{symbol.name}`, defined at {where}; {used}"


def _where(span: Span, snap: Snapshot) -> str:
    place = (
        f"line {span.line}" if span.file == snap.file else f"{display_path(span.file)}:{span.line}"
    )
    text = snap.lines_of(span.file).line(span.line).strip()
    return f"{place} `{text}`" if text else place


def made_text(made: Sequence[Made], snap: Snapshot) -> str:
    """One expansion in detail; several (a block's line, called many times) in a table."""
    groups = instances(made)
    if len(groups) == 1:
        return _one(groups[0], snap)
    rows = ["| layer | output | receptive field | params | MACs |", "|---|---|---|---|---|"]
    for group in groups[:MAX_ROWS]:
        last = group[-1]
        params, macs = _totals(group)
        name = f"{last.network}: {last.node.name}" if len(snap.analyses) > 1 else last.node.name
        rows.append(f"| {name} | {_shape(last.layer)} | {_rf(last.layer)} | {params} | {macs} |")
    more = f"\n\n… and {len(groups) - MAX_ROWS} more" if len(groups) > MAX_ROWS else ""
    op = made[0].node.op if all(m.node.op == made[0].node.op for m in made) else "this line"
    return f"`{op}`, made {len(groups)} times:\n\n" + "\n".join(rows) + more


def _one(group: list[Made], snap: Snapshot) -> str:
    first, last = group[0], group[-1]
    if len(group) == 1:
        title = f"**{last.node.name}** · `{last.node.op}`"
    else:
        span = f"{first.node.name} … {last.node.name}"
        title = f"**{_common(m.node.name for m in group)}** · {len(group)} layers, {span}"
    params, macs = _totals(group)
    lines = [
        title,
        "",
        f"- output: `{_shape(last.layer)}`"
        + ("" if len(group) == 1 else f" (of {last.node.name})"),
        f"- receptive field: {_rf(last.layer, long=True)}",
        f"- parameters: {params}",
        f"- multiply-adds: {macs}",
    ]
    for site in reversed(last.outer):
        lines.append(f"- expanded from {_where(site, snap)}")
    if len(snap.analyses) > 1:
        lines.append(f"- in network `{last.network}`")
    return "\n".join(lines)


def _common(names: Iterable[str]) -> str:
    """The dotted prefix every name shares (`layer1` of `layer1.0.conv1` ... `layer1.2.relu3`)."""
    split = [n.split(".") for n in names]
    prefix: list[str] = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        prefix.append(parts[0])
    return ".".join(prefix) or split[0][0]


def _totals(group: Sequence[Made]) -> tuple[str, str]:
    layers = [m.layer for m in group]
    if any(layer is None for layer in layers):
        return "?", "?"
    known = [layer for layer in layers if layer is not None]
    params = sum(layer.params for layer in known)
    fixed = sum(layer.fixed for layer in known)
    shared = [layer.shared_with for layer in known if layer.shared_with]
    text = f"{params:,}" + (f" (+{fixed:,} fixed)" if fixed else "")
    if len(known) == 1 and shared:
        text += f" (shares the weights of `{shared[0]}`)"
    macs = [layer.macs for layer in known]
    macs_text = "? (symbolic size)" if None in macs else f"{sum(m or 0 for m in macs):,}"
    return text, macs_text


def _shape(layer: Layer | None) -> str:
    return "?" if layer is None else fmt_shape(layer.shape)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def _pair(values: tuple[float, float], axes: tuple[int, ...]) -> str:
    shown = [_num(values[i]) for i in axes]
    return shown[0] if len(set(shown)) == 1 else "x".join(shown)


def _rf(layer: Layer | None, long: bool = False) -> str:
    """`size 35, jump 4, start 0.5` (or `35 /4` in a table); `all` when it sees the whole
    input."""
    if layer is None:
        return "?"
    rf = layer.rf
    if rf.whole and not rf.region:
        return "the whole input" if long else "all"
    size, jump = _pair(rf.size, rf.axes), _pair(rf.jump, rf.axes)
    if rf.region:  # after a RoI pooling: a region the data chooses, grown by the backbone's
        part = "region" if rf.whole else "bin"
        if not long:
            return f"{part}+{size} /{jump}"
        return f"the {part} of a RoI, grown by the backbone's field: size {size}, jump {jump}"
    if not long:
        return f"{size} /{jump}"
    return f"size {size}, jump {jump}, start {_pair(rf.start, rf.axes)}"
