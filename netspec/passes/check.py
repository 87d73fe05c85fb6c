"""check: refuse a network that is over a limit (with the numbers), and lint."""

from __future__ import annotations

from netspec.diagnostics import Collector, Diagnostic
from netspec.limits import Limits
from netspec.passes.infer import Inferred
from netspec.passes.resolve import Program
from netspec.syntax import ast


def _names_used(node: object, found: set[str]) -> set[str]:
    """Every name a syntax tree mentions: values, operations, blocks, tensors."""
    if isinstance(node, ast.Name | ast.Op | ast.Call | ast.Group):
        found.add(node.name)
    if isinstance(node, ast.Node):
        for field in type(node).model_fields:
            _names_used(getattr(node, field), found)
    elif isinstance(node, tuple):
        for item in node:
            _names_used(item, found)
    return found


def unused_definitions(program: Program) -> list[Diagnostic]:
    """Constants, tables, kernels and blocks of the main file that nothing mentions. A file
    with several networks (or none) is a library: what one network leaves out is fine."""
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


def check(inferred: Inferred, limits: Limits) -> list[Diagnostic]:
    """Raise SpecError if a limit is exceeded; return the lints (warnings)."""
    errors = Collector()
    totals, span = inferred.totals, inferred.graph.span
    if totals.params > limits.max_params:
        errors.error(
            "E404",
            f"the network has {totals.params:,} parameters; the limit is {limits.max_params:,}",
            span,
            hint="raise it with --max-params",
        )
    if totals.activations is not None and totals.activations > limits.max_activations:
        errors.error(
            "E405",
            f"one sample needs {totals.activations:,} activation values; the limit is "
            f"{limits.max_activations:,}",
            span,
            hint="raise it with --max-activations",
        )
    errors.raise_if_any()
    lints = Collector(cap=1000)
    consumed = {i for node in inferred.graph.nodes for i in node.inputs}
    consumed.update(inferred.graph.outputs)
    for inp in inferred.graph.inputs:
        if inp.name not in consumed:
            lints.add(
                Diagnostic(
                    "W303", f"input '{inp.name}' is never used", inp.span, severity="warning"
                )
            )
    return lints.items
