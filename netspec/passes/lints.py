"""lint: warnings that do not stop a compilation, one rule per kind.

A rule is a function from the compile state to the diagnostics it finds; LINTS is
their order. A new lint is one function here and one entry in LINTS (and a line
in docs/language.md's "Lints").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from netspec.diagnostics import Diagnostic
from netspec.passes.state import CompileState, Pass, need
from netspec.syntax import ast

Rule = Callable[[CompileState], Iterable[Diagnostic]]


def _names_used(node: object, found: set[str]) -> set[str]:
    """Every name a syntax tree mentions: values, operations, blocks, tensors."""
    if isinstance(node, ast.Name | ast.Op | ast.Call | ast.Group):
        found.add(node.name)
    if isinstance(node, ast.Node):
        for name in type(node).model_fields:
            _names_used(getattr(node, name), found)
    elif isinstance(node, tuple):
        for item in node:
            _names_used(item, found)
    return found


def unused_definitions(state: CompileState) -> Iterable[Diagnostic]:
    """W304: constants, tables, kernels and blocks of the main file that nothing mentions.
    A file with several networks (or none) is a library: what one network leaves out is fine."""
    program = need(state.program)
    if len(program.networks) != 1:
        return []
    used: set[str] = set()
    for table in (program.consts, program.tables, program.kernels, program.blocks):
        for item in table.values():
            _names_used(item.value if isinstance(item, ast.Const) else item, used)
    for net in program.networks.values():
        _names_used(net, used)
    lints = []
    for kind, table in (
        ("constant", program.consts),
        ("table", program.tables),
        ("kernel", program.kernels),
        ("block", program.blocks),
    ):
        for name, item in table.items():
            if name not in used and item.span.file == program.main_file:
                message = f"{kind} '{name}' is never used"
                lints.append(Diagnostic("W304", message, item.span, severity="warning"))
    return lints


def unused_results(state: CompileState) -> Iterable[Diagnostic]:
    """W301: a named result (`x = ...`) that nothing reads."""
    return [
        Diagnostic("W301", f"'{r.name}' is computed but never used", r.span, severity="warning")
        for r in need(state.expansion).results
        if not r.used
    ]


def unapplied_shared(state: CompileState) -> Iterable[Diagnostic]:
    """W302: a shared sub-network that is never applied."""
    return [
        Diagnostic("W302", f"shared '{s.name}' is never applied", s.span, severity="warning")
        for s in need(state.expansion).shared
        if not s.used
    ]


def unused_inputs(state: CompileState) -> Iterable[Diagnostic]:
    """W303: a network input that no layer reads."""
    graph = need(state.graph)
    consumed = {i for node in graph.nodes for i in node.inputs}
    consumed.update(graph.outputs)
    return [
        Diagnostic("W303", f"input '{i.name}' is never used", i.span, severity="warning")
        for i in graph.inputs
        if i.name not in consumed
    ]


LINTS: tuple[Rule, ...] = (unused_definitions, unused_results, unapplied_shared, unused_inputs)
_CAP = 1000  # warnings kept at most, so that a machine-made spec cannot flood the terminal


def lint(state: CompileState) -> None:
    found = [d for rule in LINTS for d in rule(state)][:_CAP]
    state.warnings = found
    state.diagnostics += found


LINT = Pass("lint", lint, needs=("program", "expansion", "graph"), ensures=("warnings",))
