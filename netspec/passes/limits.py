"""limits: refuse a network over a limit of `Limits`, with the numbers, before anything
is allocated (parameters E404, activation values E405)."""

from __future__ import annotations

from netspec.diagnostics import Collector
from netspec.passes.state import CompileState, Pass, need


def limits(state: CompileState) -> None:
    inferred, limit = need(state.inferred), state.limits
    errors = Collector()
    totals, span = inferred.totals, inferred.graph.span
    if totals.params > limit.max_params:
        errors.error(
            "E404",
            f"the network has {totals.params:,} parameters; the limit is {limit.max_params:,}",
            span,
            hint="raise it with --max-params",
        )
    if totals.activations is not None and totals.activations > limit.max_activations:
        errors.error(
            "E405",
            f"one sample needs {totals.activations:,} activation values; the limit is "
            f"{limit.max_activations:,}",
            span,
            hint="raise it with --max-activations",
        )
    state.diagnostics += errors.items


LIMITS = Pass("limits", limits, needs=("inferred", "limits"), ensures=())
