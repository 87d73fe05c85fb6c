"""check: refuse a network that is over a limit (with the numbers), and lint."""

from __future__ import annotations

from netspec.diagnostics import Collector, Diagnostic
from netspec.limits import Limits
from netspec.passes.infer import Inferred


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
