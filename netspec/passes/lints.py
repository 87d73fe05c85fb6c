"""lint: warnings that do not stop a compilation, one rule per kind.

A rule is a function from the compile state to the diagnostics it finds; LINTS is
their order. A new lint is one function here and one entry in LINTS (and a line
in docs/language.md's "Lints").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, get_args, get_origin

from netspec.diagnostics import Diagnostic
from netspec.ops import REGISTRY
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


def _takes_size(annotation: Any) -> bool:
    """Whether a parameter's type allows a size of two (a pair such as `3x3`), where one
    number means both (a `reshape`'s shape, of any length, is not one)."""
    if get_origin(annotation) is tuple:
        return len(get_args(annotation)) == 2 and Ellipsis not in get_args(annotation)
    return any(_takes_size(a) for a in get_args(annotation))


def _stages(node: object) -> Iterator[ast.Op]:
    """Every operation written with spaces (`conv 16 3x3`) in a syntax tree."""
    if isinstance(node, ast.Op):
        yield node
    if isinstance(node, ast.Node):
        for name in type(node).model_fields:
            yield from _stages(getattr(node, name))
    elif isinstance(node, tuple):
        for item in node:
            yield from _stages(item)


def _product(op: ast.Op) -> Iterator[tuple[str, ast.Arg, ast.Num, ast.Num]]:
    """The arguments of `op` given as a product of two numbers for a size parameter."""
    opdef = REGISTRY.get(op.name)
    if opdef is None:
        return
    positional = [a for a in op.args if a.name is None]
    named = [(a.name, a) for a in op.args if a.name is not None]
    for key, arg in [*zip(opdef.positional, positional, strict=False), *named]:
        v, field = arg.value, opdef.params.model_fields.get(key)
        if field is None or not _takes_size(field.annotation):
            continue
        if not (isinstance(v, ast.BinOp) and v.op == "*"):
            continue
        if isinstance(v.left, ast.Num) and isinstance(v.right, ast.Num):
            yield key, arg, v.left, v.right


def product_sizes(state: CompileState) -> Iterable[Diagnostic]:
    """W305: a size written as a product of two numbers (`conv 16 3*3` is a 9x9 kernel)."""
    program = need(state.program)
    found = []
    for item in (*program.networks.values(), *program.blocks.values()):
        for op in _stages(item) if item.span.file == program.main_file else ():
            for key, arg, a, b in _product(op):
                n = a.value * b.value
                found.append(
                    Diagnostic(
                        "W305",
                        f"'{a.value}*{b.value}' multiplies: '{op.name}' gets the {key} {n}",
                        arg.span,
                        severity="warning",
                        hint=f"a size is written with 'x': {a.value}x{b.value}",
                    )
                )
    return found


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


LINTS: tuple[Rule, ...] = (
    unused_definitions,
    unused_results,
    unapplied_shared,
    unused_inputs,
    product_sizes,
)
_CAP = 1000  # warnings kept at most, so that a machine-made spec cannot flood the terminal


def lint(state: CompileState) -> None:
    found = [d for rule in LINTS for d in rule(state)][:_CAP]
    state.warnings = found
    state.diagnostics += found


LINT = Pass("lint", lint, needs=("program", "expansion", "graph"), ensures=("warnings",))
