"""expand: instantiate blocks, repeats, branches and shared sub-networks into a
flat Graph whose nodes are named by dotted paths (`layer3.1.conv2`).

The cursor: a chain that does not start from a tensor name reads the current
tensor, which is the input at first, then the result of the last chain. A named
result (`x = ...`) that a later statement uses by name is a branch: it does not
move the cursor (so `body = ...` and `skip = ...` both read the block's input).

Naming: a stage written as `x = stage` or `stage as x` is called `x`; the
stages of `x = a | b` are `x.0` and `x.1`; an unnamed stage takes its
operation's (or block's) name and a counter, `conv1`, `conv2`, ...; a block
call's nodes live under its name, branches of a group under `group.0`, ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from netspec.diagnostics import (
    Collector,
    Diagnostic,
    Span,
    SpecError,
    did_you_mean,
    spec_error,
)
from netspec.ir import Graph, GraphInput, Node, OpParams
from netspec.limits import Limits
from netspec.ops import REGISTRY, OpDef, merge_names
from netspec.passes.arguments import op_arguments, plural, validate
from netspec.passes.resolve import Program
from netspec.passes.values import Evaluator, Word, describe
from netspec.syntax import ast

FAILED = "<failed>"  # the result of a statement that had an error


class _Skip(Exception):
    """A stage reads the result of a statement that already failed: say nothing more."""


@dataclass
class _Shared:
    definition: ast.Shared
    scope: _Scope
    owners: dict[str, str] | None = None  # relative node name -> the node holding the weights


@dataclass
class _Scope:
    prefix: str
    values: dict[str, Any]
    tensors: dict[str, str] = field(default_factory=dict)
    shared: dict[str, _Shared] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=dict)
    origin: tuple[Span, ...] = ()
    stack: tuple[str, ...] = ()
    assigned: dict[str, Span] = field(default_factory=dict)
    sites: tuple[tuple[str, Span], ...] = ()  # (what, where) of each enclosing call

    def label(self, label: str | None, base: str) -> str:
        if label is not None:
            return label
        self.counters[base] = self.counters.get(base, 0) + 1
        return f"{base}{self.counters[base]}"

    def child(
        self, prefix: str, values: dict[str, Any], site: Span, what: str, block: str | None = None
    ) -> _Scope:
        stack = (*self.stack, block) if block else self.stack
        sites = (*self.sites, (what, site))
        return _Scope(prefix, values, origin=(*self.origin, site), stack=stack, sites=sites)


@dataclass
class _ShareContext:
    base: str
    record: _Shared


class Expander:
    def __init__(self, program: Program, limits: Limits, globals_: dict[str, Any]) -> None:
        self.program = program
        self.limits = limits
        self.globals = globals_
        self.nodes: list[Node] = []
        self.taken: dict[str, Span] = {}
        self.tensor_uses: dict[str, int] = {}
        self.sharing: list[_ShareContext] = []
        self.warnings = Collector()
        self.errors = Collector()
        self.seen: set[tuple[str, str, str]] = set()

    # ---- statements ------------------------------------------------------------------

    def body(
        self, stmts: tuple[ast.Statement, ...], scope: _Scope, cursor: str
    ) -> tuple[str, tuple[str, ...] | None]:
        last, outputs = cursor, None
        branches = _referenced(stmts)
        for st in stmts:
            try:
                if isinstance(st, ast.ChainStmt):
                    cursor = last = self.chain(st.chain, scope, cursor, None)
                elif isinstance(st, ast.Assign):
                    self._fresh_tensor(st.target, st.span, scope)
                    last = self.chain(st.chain, scope, cursor, st.target)
                    scope.tensors[st.target] = last
                    scope.assigned[st.target] = st.span
                    if st.target not in branches:
                        cursor = last
                elif isinstance(st, ast.Shared):
                    self._fresh_tensor(st.name, st.span, scope)
                    scope.shared[st.name] = _Shared(st, scope)
                else:
                    outputs = tuple(self._tensor(n.name, n.span, scope) for n in st.names)
            except (SpecError, _Skip) as e:
                # Go on as if the line were not there (names are checked without shapes), but
                # say nothing of lines that read the result it would have named.
                self._record(e, scope)
                if isinstance(st, ast.Assign):
                    scope.tensors.setdefault(st.target, FAILED)
        self._lint_unused(scope)
        return last, outputs

    def _record(self, e: SpecError | _Skip, scope: _Scope) -> None:
        """Keep a statement's errors and go on with the next statement (up to the cap).
        An error inside a block names the call sites that led there."""
        if isinstance(e, _Skip):
            return
        if len(self.errors.items) >= self.errors.cap:
            raise e
        for d in e.diagnostics:
            key = (d.code, d.message, d.span.where)
            if key in self.seen:
                continue  # the same mistake in a block called again
            self.seen.add(key)
            for what, site in reversed(scope.sites):
                d = d.with_note(what, site)
            self.errors.add(d)

    def _fresh_tensor(self, name: str, span: Span, scope: _Scope) -> None:
        if name in scope.tensors or name in scope.shared:
            raise spec_error(
                "E210",
                f"'{name}' is already defined in this scope",
                span,
                hint="choose another name",
            )
        if name in REGISTRY or name in self.program.blocks:
            raise spec_error(
                "E210",
                f"'{name}' names an operation or block; it cannot also name a tensor",
                span,
                hint="choose another name",
            )

    def _lint_unused(self, scope: _Scope) -> None:
        for name, span in scope.assigned.items():
            if scope.tensors[name] != FAILED and not self.tensor_uses.get(scope.tensors[name]):
                self.warnings.add(
                    Diagnostic(
                        "W301", f"'{name}' is computed but never used", span, severity="warning"
                    )
                )
        for name, sd in scope.shared.items():
            if sd.owners is None:
                self.warnings.add(
                    Diagnostic(
                        "W302",
                        f"shared '{name}' is never applied",
                        sd.definition.span,
                        severity="warning",
                    )
                )

    def chain(self, chain: ast.Chain, scope: _Scope, src: str, name: str | None) -> str:
        stages = chain.stages
        head = stages[0]
        if isinstance(head, ast.Op) and not head.args and head.name in scope.tensors:
            # `x = a | conv ...` reads tensor `a`: the reference is not a stage of x.
            src, stages = self._tensor(head.name, head.name_span, scope), stages[1:]
        if name is None:
            for stage in stages:
                src = self.stage(stage, scope, src, None)
            return src
        if len(stages) == 1 and not isinstance(stages[0], ast.Repeat):
            return self.stage(stages[0], scope, src, name)
        index = 0  # x = a | repeat 3 b  names x.0, x.1, x.2, x.3, like one nn.Sequential
        for stage in stages:
            reps = self._count(stage, scope) if isinstance(stage, ast.Repeat) else 1
            inner = stage.stage if isinstance(stage, ast.Repeat) else stage
            for _ in range(reps):
                src = self.stage(inner, scope, src, f"{name}.{index}")
                index += 1
        return src

    # ---- stages ------------------------------------------------------------------------

    def stage(self, stage: ast.Stage, scope: _Scope, src: str, label: str | None) -> str:
        if isinstance(stage, ast.Repeat):
            return self.repeat(stage, scope, src, label)
        if stage.alias is not None:
            self._fresh_tensor(stage.alias, stage.span, scope)
            label = stage.alias
        if isinstance(stage, ast.Group):
            out = self.group(stage, scope, src, label)
        else:
            out = self.named_stage(stage, scope, src, label)
        if stage.alias is not None:
            scope.tensors[stage.alias] = out
        return out

    def named_stage(
        self, stage: ast.Op | ast.Call, scope: _Scope, src: str, label: str | None
    ) -> str:
        name = stage.name
        if name in scope.tensors and isinstance(stage, ast.Op) and not stage.args:
            return self._tensor(name, stage.name_span, scope)
        if name in scope.tensors:
            raise spec_error("E211", f"'{name}' is a tensor, not an operation", stage.name_span)
        if name in scope.shared:
            return self.apply_shared(scope.shared[name], stage, scope, src, label)
        if name in self.program.blocks:
            return self.block_call(self.program.blocks[name], stage, scope, src, label)
        opdef = REGISTRY.get(name)
        if opdef is None:
            candidates = [*REGISTRY, *self.program.blocks, *scope.shared, *scope.tensors]
            raise spec_error(
                "E202",
                f"unknown operation '{name}'",
                stage.name_span,
                hint=did_you_mean(name, candidates),
            )
        if opdef.arity != 1:
            return self.merge(opdef, stage, scope, label)
        return self.op(opdef, stage, scope, src, label)

    def _need(self, src: str, span: Span) -> str:
        if src == FAILED:
            raise _Skip
        if not src:
            raise spec_error(
                "E212",
                "this stage has no input: the network has several inputs",
                span,
                hint="start the chain with the input it reads, e.g. 'left | conv 6 5x5'",
            )
        return src

    def _tensor(self, name: str, span: Span, scope: _Scope) -> str:
        if name not in scope.tensors:
            raise spec_error(
                "E203", f"unknown tensor '{name}'", span, hint=did_you_mean(name, scope.tensors)
            )
        node = scope.tensors[name]
        if node == FAILED:
            raise _Skip
        self.tensor_uses[node] = self.tensor_uses.get(node, 0) + 1
        return node

    def _use(self, src: str) -> str:
        self.tensor_uses[src] = self.tensor_uses.get(src, 0) + 1
        return src

    def op(
        self, opdef: OpDef, stage: ast.Op | ast.Call, scope: _Scope, src: str, label: str | None
    ) -> str:
        src = self._need(src, stage.span)
        kwargs, spans = op_arguments(opdef, stage, scope.values)
        tie = kwargs.pop("tie", None)
        params = validate(opdef, kwargs, spans, stage, self.globals)
        shares = self._tie(tie, spans.get("tie", stage.span), scope) if tie is not None else None
        return self.emit(
            scope,
            scope.label(label, opdef.name),
            opdef.name,
            params,
            (self._use(src),),
            stage.span,
            shares,
        )

    def _tie(self, tie: Any, span: Span, scope: _Scope) -> str:
        if not isinstance(tie, Word) or tie not in scope.tensors:
            raise spec_error(
                "E215",
                f"tie= names the layer whose weights to share; {describe(tie)} is not a layer here",
                span,
                hint=did_you_mean(str(tie), scope.tensors),
            )
        return self._tensor(tie, span, scope)

    def merge(
        self, opdef: OpDef, stage: ast.Op | ast.Call, scope: _Scope, label: str | None
    ) -> str:
        if isinstance(stage, ast.Op):
            raise spec_error(
                "E206",
                f"'{opdef.name}' merges tensors",
                stage.span,
                hint=f"write {opdef.name}(a, b) or {opdef.name} {{ one branch per line }}",
            )
        inputs = []
        for arg in stage.args:
            if arg.name is not None or not isinstance(arg.value, ast.Name):
                raise spec_error("E216", f"'{opdef.name}' takes tensor names", arg.span)
            inputs.append(self._tensor(arg.value.name, arg.value.span, scope))
        self._arity(opdef, len(inputs), stage.span)
        return self.emit(
            scope,
            scope.label(label, opdef.name),
            opdef.name,
            opdef.params(),
            tuple(inputs),
            stage.span,
        )

    def _arity(self, opdef: OpDef, n: int, span: Span) -> None:
        want = opdef.arity or 2
        if n < want or (opdef.arity is not None and n != want):
            exactly = "exactly" if opdef.arity else "at least"
            raise spec_error("E217", f"'{opdef.name}' needs {exactly} {want} inputs, got {n}", span)

    def group(self, stage: ast.Group, scope: _Scope, src: str, label: str | None) -> str:
        opdef = REGISTRY.get(stage.name)
        if opdef is None or not opdef.merges:
            *most, last = merge_names()
            raise spec_error(
                "E218",
                f"'{stage.name}' cannot take branches",
                stage.name_span,
                hint=f"branches are merged by {', '.join(map(repr, most))} or {last!r}",
            )
        self._arity(opdef, len(stage.branches), stage.span)
        src = self._need(src, stage.span)
        name = scope.label(label, opdef.name)
        outs = []
        for i, branch in enumerate(stage.branches):
            inner = _Scope(
                f"{scope.prefix}{name}.{i}.",
                scope.values,
                dict(scope.tensors),
                scope.shared,
                origin=scope.origin,
                stack=scope.stack,
                sites=scope.sites,
            )
            outs.append(self.chain(branch, inner, src, None))
        return self.emit(scope, name, opdef.name, opdef.params(), tuple(outs), stage.span)

    def repeat(self, stage: ast.Repeat, scope: _Scope, src: str, label: str | None) -> str:
        for i in range(self._count(stage, scope)):
            src = self.stage(stage.stage, scope, src, f"{label}.{i}" if label else None)
        return src

    def _count(self, stage: ast.Repeat, scope: _Scope) -> int:
        count = Evaluator(scope.values).value(stage.count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise spec_error(
                "E219", f"repeat needs a whole number, got {describe(count)}", stage.count.span
            )
        if count > self.limits.max_repeat:
            raise spec_error(
                "E401",
                f"repeat {count:,} is over the limit of {self.limits.max_repeat:,}",
                stage.count.span,
                hint="raise it with --max-repeat",
            )
        return count

    # ---- blocks and shared sub-networks ---------------------------------------------------

    def block_call(
        self, block: ast.Block, stage: ast.Op | ast.Call, scope: _Scope, src: str, label: str | None
    ) -> str:
        if block.name in scope.stack:
            raise spec_error(
                "E207",
                f"block '{block.name}' calls itself",
                stage.span,
                hint="blocks cannot be recursive; use repeat",
            )
        if len(scope.stack) >= self.limits.max_depth:
            raise spec_error(
                "E402",
                f"blocks nest deeper than the limit of {self.limits.max_depth}",
                stage.span,
                hint="raise it with --max-depth",
            )
        values = self._bind(block, stage, scope)
        name = scope.label(label, block.name)
        what = f"in block '{block.name}', expanded from here"
        inner = scope.child(f"{scope.prefix}{name}.", values, stage.span, what, block.name)
        out, outputs = self.body(block.body, inner, self._need(src, stage.span))
        if outputs is not None and len(outputs) != 1:
            raise spec_error("E220", "a block has exactly one output", block.span)
        return outputs[0] if outputs else out

    def _bind(self, block: ast.Block, stage: ast.Op | ast.Call, scope: _Scope) -> dict[str, Any]:
        ev = Evaluator(scope.values)
        params = {p.name: p for p in block.params}
        given: dict[str, Any] = {}
        positional = [a for a in stage.args if a.name is None]
        if len(positional) > len(block.params):
            raise SpecError(
                [
                    Diagnostic(
                        "E213",
                        f"block '{block.name}' takes {plural(len(block.params), 'argument')}, "
                        f"got {len(positional)}",
                        positional[len(block.params)].span,
                    ).with_note("the block is defined here", block.span)
                ]
            )
        for p, arg in zip(block.params, positional, strict=False):
            given[p.name] = ev.value(arg.value)
        for arg in stage.args:
            if arg.name is None:
                continue
            if arg.name not in params:
                raise spec_error(
                    "E221",
                    f"block '{block.name}' has no parameter '{arg.name}'",
                    arg.span,
                    hint=did_you_mean(arg.name, params),
                )
            if arg.name in given:
                raise spec_error("E214", f"'{arg.name}' is given twice", arg.span)
            given[arg.name] = ev.value(arg.value)
        values = dict(self.globals)
        for p in block.params:
            if p.name in given:
                values[p.name] = given[p.name]
            elif p.default is not None:
                values[p.name] = Evaluator(values).value(p.default)
            else:
                raise SpecError(
                    [
                        Diagnostic(
                            "E222",
                            f"block '{block.name}' needs a value for '{p.name}'",
                            stage.span,
                            hint=f"call it as {block.name}({', '.join(params)})",
                        ).with_note(f"'{p.name}' has no default", p.span)
                    ]
                )
        return values

    def apply_shared(
        self, sd: _Shared, stage: ast.Op | ast.Call, scope: _Scope, src: str, label: str | None
    ) -> str:
        name = sd.definition.name
        if isinstance(stage, ast.Call):
            if len(stage.args) != 1 or not isinstance(stage.args[0].value, ast.Name):
                raise spec_error(
                    "E223", f"shared '{name}' is applied to one tensor, e.g. {name}(x)", stage.span
                )
            arg = stage.args[0].value
            src = self._tensor(arg.name, arg.span, scope)
        elif stage.args:
            raise spec_error("E223", f"shared '{name}' takes no arguments", stage.span)
        label = scope.label(label, name)
        what = f"in shared '{name}', applied here"
        inner = sd.scope.child(f"{scope.prefix}{label}.", sd.scope.values, stage.span, what)
        inner.stack, inner.sites = scope.stack, (*scope.sites, (what, stage.span))
        self.sharing.append(_ShareContext(inner.prefix, sd))
        first = sd.owners is None
        if first:
            sd.owners = {}
        try:
            out, _ = self.body(sd.definition.body, inner, self._need(src, stage.span))
        finally:
            self.sharing.pop()
        if first:
            sd.owners = dict(sd.owners or {})
        return out

    # ---- nodes ------------------------------------------------------------------------------

    def emit(
        self,
        scope: _Scope,
        label: str,
        op: str,
        params: OpParams,
        inputs: tuple[str, ...],
        span: Span,
        shares: str | None = None,
    ) -> str:
        full = scope.prefix + label
        if full in self.taken:
            raise SpecError(
                [
                    Diagnostic("E224", f"two layers are named '{full}'", span).with_note(
                        "the other one", self.taken[full]
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
        if shares is None and REGISTRY[op].weighted and self.sharing:
            shares = self._shared_owner(full)
        self.taken[full] = span
        self.nodes.append(Node(full, op, params, inputs, span, scope.origin, shares))
        return full

    def _shared_owner(self, full: str) -> str | None:
        ctx = self.sharing[-1]
        rel = full[len(ctx.base) :]
        owners = ctx.record.owners
        assert owners is not None
        if rel in owners and owners[rel] != full:
            return owners[rel]
        owners[rel] = full
        return None


def _referenced(stmts: tuple[ast.Statement, ...]) -> set[str]:
    """Names used as tensors in a body: a named result used by name later is a branch,
    and does not move the cursor; one never used by name continues the chain."""
    found: set[str] = set()

    def stage(st: ast.Stage) -> None:
        if isinstance(st, ast.Repeat):
            stage(st.stage)
        elif isinstance(st, ast.Group):
            for branch in st.branches:
                for s in branch.stages:
                    stage(s)
        elif isinstance(st, ast.Op) and not st.args:
            found.add(st.name)
        elif isinstance(st, ast.Call):
            found.update(a.value.name for a in st.args if isinstance(a.value, ast.Name))

    for st in stmts:
        if isinstance(st, ast.ChainStmt | ast.Assign):
            for s in st.chain.stages:
                stage(s)
        elif isinstance(st, ast.Output):
            found.update(n.name for n in st.names)
    return found


def expand(
    program: Program,
    network: ast.Network,
    limits: Limits,
    globals_: dict[str, Any],
    symbols: Mapping[str, int],
) -> tuple[Graph, Expander]:
    """Expand one network of the program into a flat graph."""
    ex = Expander(program, limits, globals_)
    scope = _Scope("", dict(globals_))
    inputs = []
    for inp in network.inputs:
        if inp.name in scope.tensors:
            raise spec_error("E210", f"input '{inp.name}' is given twice", inp.span)
        shape = tuple(symbols.get(d, d) if isinstance(d, str) else d for d in inp.shape)
        inputs.append(GraphInput(inp.name, shape, inp.span))
        scope.tensors[inp.name] = inp.name
    cursor = network.inputs[0].name if len(network.inputs) == 1 else ""
    if cursor:
        ex.tensor_uses[cursor] = 0
    last, outputs = ex.body(network.body, scope, cursor)
    ex.errors.raise_if_any()
    if not ex.nodes and not outputs:
        raise spec_error("E227", f"network '{network.name}' has no layers", network.span)
    graph = Graph(
        network.name,
        tuple(inputs),
        tuple(ex.nodes),
        outputs or (last,),
        network.span,
        dict(symbols),
    )
    return graph, ex
