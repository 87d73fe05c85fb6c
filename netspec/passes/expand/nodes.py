"""The nodes being emitted: unique dotted names, the node limit, and how often each
tensor is read (for W301)."""

from __future__ import annotations

from netspec.diagnostics import Diagnostic, Span, SpecError, did_you_mean, spec_error
from netspec.ir import Node, OpParams
from netspec.limits import Limits
from netspec.ops import REGISTRY
from netspec.passes.expand.scope import FAILED, Scope, Skip
from netspec.passes.expand.sharing import Sharing


class Nodes:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.nodes: list[Node] = []
        self.sharing = Sharing()
        self.uses: dict[str, int] = {}
        self._taken: dict[str, Span] = {}

    def use(self, node: str) -> str:
        """Count one read of `node`'s output; return it."""
        self.uses[node] = self.uses.get(node, 0) + 1
        return node

    def tensor(self, name: str, span: Span, scope: Scope) -> str:
        """The node a tensor name of `scope` stands for (counted as read)."""
        if name not in scope.tensors:
            known = [t for t in scope.tensors if t != "in"]
            hint = did_you_mean(name, scope.tensors) or (
                f"the tensors named before this line: {', '.join(known[-8:])}" if known else None
            )
            if name == "in":
                hint = "'in' is the input of a block, or of a network with one input"
            raise spec_error("E203", f"unknown tensor '{name}'", span, hint=hint)
        node = scope.tensors[name]
        if node == FAILED:
            raise Skip
        return self.use(node)

    def emit(
        self,
        scope: Scope,
        label: str,
        op: str,
        params: OpParams,
        inputs: tuple[str, ...],
        span: Span,
        shares: str | None = None,
    ) -> str:
        """Add one node named `scope.prefix + label`; return its name."""
        full = scope.prefix + label
        if full in self._taken:
            raise SpecError(
                [
                    Diagnostic("E224", f"two layers are named '{full}'", span).with_note(
                        "the other one", self._taken[full]
                    )
                ]
            )
        if len(self.nodes) >= self.limits.max_nodes:
            raise spec_error(
                "E403",
                f"the network expands to more than {self.limits.max_nodes:,} layers",
                span,
                hint="raise the limit with --max-nodes",
            )
        if shares is None and REGISTRY[op].weighted:
            shares = self.sharing.owner(full)
        self._taken[full] = span
        self.nodes.append(Node(full, op, params, inputs, span, scope.origin, shares))
        return full
