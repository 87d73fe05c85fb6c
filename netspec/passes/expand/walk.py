"""The walk over statements and stages that emits nodes: chains, operations, merges,
groups, repeats, block calls and shared sub-networks.

The cursor: a chain that does not start from a tensor name reads the current
tensor, which is the input at first, then the result of the last chain. A named
result (`x = ...`) that a later statement uses by name is a branch: it does not
move the cursor (so `body = ...` and `skip = ...` both read the block's input).

`in` is the tensor a body reads (a block's or shared body's input, or a one-input
network's), and `in.c`, `in.h`, `in.w` its sizes: `Walker.shape_of` applies the
shape rules to the nodes emitted so far when a value asks for one. A merge's
argument is a tensor's name or a chain (`add(body, project(c, stride))`).
"""

from __future__ import annotations

from typing import Any, NoReturn

from netspec.diagnostics import Collector, Diagnostic, Span, SpecError, did_you_mean, spec_error
from netspec.ir import Graph, GraphInput, Shape
from netspec.limits import MAX_VALUE, Limits
from netspec.ops import REGISTRY, OpDef, ShapeError, merge_names
from netspec.ops.channels import SEVERAL
from netspec.ops.synonyms import op_hint
from netspec.passes.arguments import op_arguments, validate
from netspec.passes.define import Program
from netspec.passes.expand.blocks import bind_arguments, check_call
from netspec.passes.expand.facts import Expansion, Named
from netspec.passes.expand.nodes import Nodes
from netspec.passes.expand.scope import FAILED, Scope, Skip
from netspec.passes.expand.several import DISCARD, check_names, outputs_of, unpack, unsaid
from netspec.passes.expand.sharing import SharedDef
from netspec.passes.expand.stages import bound_stage
from netspec.passes.infer import infer_graph
from netspec.passes.values import Evaluator, InputSizes, Word, describe
from netspec.syntax import ast


class Walker:
    """Expands bodies into `nodes`, gathering each statement's errors (up to the cap)."""

    def __init__(self, program: Program, limits: Limits, globals_: dict[str, Any]) -> None:
        self.program = program
        self.limits = limits
        self.globals = globals_
        self.out = Nodes(limits)
        self.facts = Expansion()
        self.errors = Collector()
        self._seen: set[tuple[str, str, str]] = set()
        self.inputs: tuple[GraphInput, ...] = ()
        self._shapes: dict[str, Shape] = {}
        self._shaped = 0  # how many emitted nodes have a shape in _shapes

    def start(self, inputs: tuple[GraphInput, ...]) -> None:
        """The network's inputs, before its body is walked."""
        self.inputs = inputs
        self._shapes = {i.name: i.shape for i in inputs}

    def shape_of(self, node: str) -> Shape:
        """The shape of tensor `node`, emitted already: the shape rules of `infer` applied
        to the nodes emitted so far. A shape error on the way is reported as `infer`
        reports it, and the statement that asked stops."""
        nodes = self.out.nodes
        try:
            for n in nodes[self._shaped :]:
                ins = [self._shapes[i] for i in n.inputs]
                self._shapes[n.name] = REGISTRY[n.op].shape(n.params, ins)
                self._shaped += 1
        except ShapeError:
            self._shape_errors(Graph("partial", self.inputs, tuple(nodes[: self._shaped + 1]), ()))
        return self._shapes[node]

    def _shape_errors(self, partial: Graph) -> NoReturn:
        """Report the shape errors of `partial` as `infer` words them (each once), then
        stop the statement that asked for a shape."""
        try:
            infer_graph(partial)
        except SpecError as found:
            for d in found.diagnostics:
                if (d.code, d.message, d.span.where) not in self._seen:
                    self._seen.add((d.code, d.message, d.span.where))
                    self.errors.add(d)
            raise Skip from None
        raise AssertionError("a shape rule refused a node in expand but not in infer")

    def sizes(self, src: str) -> InputSizes:
        """What `in` means in a body that reads `src`: its sizes, found when asked for."""
        return InputSizes(lambda: self.shape_of(src))

    # ---- statements ------------------------------------------------------------------

    def body(
        self, stmts: tuple[ast.Statement, ...], scope: Scope, cursor: str
    ) -> tuple[str, tuple[str, ...] | None]:
        """Expand a body from `cursor`; its last result and its `output` names, if any."""
        last, outputs = cursor, None
        branches = _referenced(stmts)
        said: ast.Output | None = None  # the body's `output` statement
        for st in stmts:
            try:
                if isinstance(st, ast.ChainStmt):
                    cursor = last = self.chain(st.chain, scope, cursor, None)
                elif isinstance(st, ast.Assign):
                    scope.fresh(st.target, st.span, self.program.blocks)
                    last = self.chain(st.chain, scope, cursor, st.target)
                    scope.tensors[st.target] = last
                    scope.assigned[st.target] = st.span
                    if st.target not in branches:
                        cursor = last
                elif isinstance(st, ast.Unpack):
                    self.unpack(st, scope, cursor)
                elif isinstance(st, ast.Shared):
                    scope.fresh(st.name, st.span, self.program.blocks)
                    scope.shared[st.name] = SharedDef(st, scope)
                else:
                    _check_output(st, said)
                    said = st
                    outputs = tuple(self.out.tensor(n.name, n.span, scope) for n in st.names)
            except (SpecError, Skip) as e:
                # Go on as if the line were not there (names are checked without shapes), but
                # say nothing of lines that read the result it would have named.
                self._record(e, scope)
                for name in _named(st):
                    scope.tensors.setdefault(name, FAILED)
        if said is None and stmts and isinstance(stmts[-1], ast.Unpack):
            self._record(unsaid(stmts[-1]), scope)
        self._note_names(scope)
        return last, outputs

    def unpack(self, st: ast.Unpack, scope: Scope, cursor: str) -> None:
        """`a, b = ...`: each name for one of the tensors the chain gives (a branch: the
        cursor stays where it was)."""
        check_names(st, scope, self.program.blocks)
        for target, out in zip(st.targets, unpack(self, st, scope, cursor), strict=True):
            if target.name != DISCARD:
                scope.tensors[target.name] = out
                scope.assigned[target.name] = target.span

    def _record(self, e: SpecError | Skip, scope: Scope) -> None:
        """Keep a statement's errors and go on with the next statement (up to the cap).
        An error inside a block names the call sites that led there."""
        if isinstance(e, Skip):
            return
        if len(self.errors.items) >= self.errors.cap:
            raise e
        for d in e.diagnostics:
            key = (d.code, d.message, d.span.where)
            if key in self._seen:
                continue  # the same mistake in a block called again
            self._seen.add(key)
            for what, site in reversed(scope.sites):
                d = d.with_note(what, site)
            self.errors.add(d)

    def _note_names(self, scope: Scope) -> None:
        """Record the body's named results and shared definitions for the lints."""
        for name, span in scope.assigned.items():
            node = scope.tensors[name]
            if node != FAILED:
                self.facts.results.append(Named(name, span, bool(self.out.uses.get(node))))
        for name, sd in scope.shared.items():
            self.facts.shared.append(Named(name, sd.definition.span, sd.applied))

    def chain(self, chain: ast.Chain, scope: Scope, src: str, name: str | None) -> str:
        stages = chain.stages
        head = stages[0]
        if isinstance(head, ast.Op) and not head.args and head.name in scope.tensors:
            # `x = a | conv ...` reads tensor `a`: the reference is not a stage of x.
            src, stages = self.out.tensor(head.name, head.name_span, scope), stages[1:]
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

    def stage(self, stage: ast.Stage, scope: Scope, src: str, label: str | None) -> str:
        if isinstance(stage, ast.Repeat):
            for i in range(self._count(stage, scope)):
                src = self.stage(stage.stage, scope, src, f"{label}.{i}" if label else None)
            return src
        if stage.alias is not None:
            scope.fresh(stage.alias, stage.span, self.program.blocks)
            label = stage.alias
        if isinstance(stage, ast.Group):
            out = self.group(stage, scope, src, label)
        else:
            out = self.named_stage(stage, scope, src, label)
        if stage.alias is not None:
            scope.tensors[stage.alias] = out
        return out

    def named_stage(
        self, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> str:
        name = stage.name
        reads = isinstance(stage, ast.Op) and not stage.args
        if reads and (name in scope.tensors or name == "in"):  # `in` where there is none: E203
            return self.out.tensor(name, stage.name_span, scope)
        if name in scope.tensors:
            raise spec_error("E211", f"'{name}' is a tensor, not an operation", stage.name_span)
        stage, scope = self.resolve(stage, scope)
        name = stage.name
        if name in SEVERAL and name not in scope.shared and name not in self.program.blocks:
            raise spec_error(
                "E241",
                f"'{name}' gives several tensors, and a chain takes one",
                stage.span,
                hint=f"name each on the left: a, b = {name} ...; or keep some maps with slice a..b",
            )
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
                hint=op_hint(name, candidates),
            )
        if opdef.arity != 1:
            return self.merge(opdef, stage, scope, src, label)
        return self.op(opdef, stage, scope, src, label)

    def resolve(self, stage: ast.Op | ast.Call, scope: Scope) -> tuple[ast.Op | ast.Call, Scope]:
        """The stage a block's parameter stands for (`act`, given `act=relu`), and the scope
        that reads its arguments; `stage` itself where its name is no such parameter."""
        bound = bound_stage(stage, scope.values, self.names_stage)
        if bound is None:
            return stage, scope
        resolved, values = bound
        return resolved, scope if values is scope.values else scope.reading(values)

    def names_stage(self, name: str) -> bool:
        """Whether `name` is what a stage may name: an operation, a block, or split or chunk."""
        return name in REGISTRY or name in self.program.blocks or name in SEVERAL

    def need(self, src: str, span: Span) -> str:
        if src == FAILED:
            raise Skip
        if not src:
            raise spec_error(
                "E212",
                "this stage has no input: the network has several inputs",
                span,
                hint="start the chain with the input it reads, e.g. 'left | conv 6 5x5'",
            )
        return src

    def op(
        self, opdef: OpDef, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> str:
        src = self.need(src, stage.span)
        kwargs, spans = op_arguments(opdef, stage, scope.values)
        tie = kwargs.pop("tie", None)
        params = validate(opdef, kwargs, spans, stage, self.globals)
        shares = self._tie(tie, spans.get("tie", stage.span), scope) if tie is not None else None
        name = scope.label(label, opdef.name)
        inputs = (self.out.use(src),)
        return self.out.emit(scope, name, opdef.name, params, inputs, stage.span, shares)

    def _tie(self, tie: Any, span: Span, scope: Scope) -> str:
        if not isinstance(tie, Word) or tie not in scope.tensors:
            raise spec_error(
                "E215",
                f"tie= names the layer whose weights to share; {describe(tie)} is not a layer here",
                span,
                hint=did_you_mean(str(tie), scope.tensors),
            )
        return self.out.tensor(tie, span, scope)

    def merge(
        self, opdef: OpDef, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> str:
        if isinstance(stage, ast.Op):
            raise spec_error(
                "E206",
                f"'{opdef.name}' merges tensors",
                stage.span,
                hint=f"write {opdef.name}(a, b) or {opdef.name} {{ one branch per line }}",
            )
        fields = opdef.params.model_fields
        # a size after the tensors is a positional parameter: `roi_pool(maps, rois, 7x7)`
        sizes = [a for a in stage.args if a.name is None and isinstance(a.value, ast.Size)]
        sized = sizes if opdef.positional else []
        tensors = [
            a for a in stage.args if (a.name is None or a.name not in fields) and a not in sized
        ]
        inputs = [self._merged(opdef, arg, scope, src) for arg in tensors]
        _arity(opdef, len(inputs), stage.span)
        # parameters by name after the tensors: `resize(top, lateral, mode=bilinear)`
        named = tuple(a for a in stage.args if a.name in fields)
        given = stage.model_copy(update={"args": (*sized, *named)})
        kwargs, spans = op_arguments(opdef, given, scope.values)
        params = validate(opdef, kwargs, spans, given, self.globals)
        name = scope.label(label, opdef.name)
        return self.out.emit(scope, name, opdef.name, params, tuple(inputs), stage.span)

    def _merged(self, opdef: OpDef, arg: ast.Arg, scope: Scope, src: str) -> str:
        """One input of a merge: a tensor by name, or a chain that reads the current tensor
        (`project(c, stride)`, `identity`) or starts from a tensor (`x | conv 8 1x1`)."""
        value = arg.value
        if (
            isinstance(value, ast.Name)
            and value.name not in scope.tensors
            and self._one_input(value.name, scope)
        ):
            op = ast.Op(name=value.name, name_span=value.span, span=value.span)
            value = ast.Chain(stages=(op,), span=value.span)
        if isinstance(value, ast.Name):
            return self.out.tensor(value.name, value.span, scope)
        if arg.name is not None or not isinstance(value, ast.Chain):
            raise spec_error(
                "E216",
                f"'{opdef.name}' takes tensors",
                arg.span,
                hint=f"write their names, or chains: {opdef.name}(body, project(c, stride)), "
                f"{opdef.name}(a, x | conv 8 1x1)",
            )
        return self.chain(value, scope, self.need(src, value.span), None)

    def _one_input(self, name: str, scope: Scope) -> bool:
        """Whether `name` is a stage that reads one tensor: an operation, block or shared,
        or a block's parameter that names one (`act`, given `act=relu`)."""
        stage = ast.Op(name=name)
        bound = bound_stage(stage, scope.values, self.names_stage)
        if bound is not None:
            name = bound[0].name
        opdef = REGISTRY.get(name)
        if opdef is not None:
            return opdef.arity == 1
        return name in self.program.blocks or name in scope.shared

    def group(self, stage: ast.Group, scope: Scope, src: str, label: str | None) -> str:
        opdef = REGISTRY.get(stage.name)
        if opdef is None or not opdef.merges:
            *most, last = merge_names()
            raise spec_error(
                "E218",
                f"'{stage.name}' cannot take branches",
                stage.name_span,
                hint=op_hint(stage.name, merge_names())
                or (
                    "stages in a row need no braces: one per line, or joined by '|'"
                    if opdef is None and stage.name not in self.program.blocks
                    else f"branches are merged by {', '.join(map(repr, most))} or {last!r}"
                ),
            )
        needs = [f"{n}=" for n, f in opdef.params.model_fields.items() if f.is_required()]
        if needs:  # what only a call gives: `ssd(a, b, classes=10, scales=[0.1, 0.2])`
            raise spec_error(
                "E218",
                f"'{stage.name}' cannot take branches: it needs {', '.join(needs)}",
                stage.name_span,
                hint=f"name its tensors and call it: {stage.name}(a, b, {needs[0]}...)",
            )
        _arity(opdef, len(stage.branches), stage.span)
        src = self.need(src, stage.span)
        name = scope.label(label, opdef.name)
        outs = []
        for i, branch in enumerate(stage.branches):
            inner = scope.branch(f"{scope.prefix}{name}.{i}.")
            outs.append(self.chain(branch, inner, src, None))
        return self.out.emit(scope, name, opdef.name, opdef.params(), tuple(outs), stage.span)

    def _count(self, stage: ast.Repeat, scope: Scope) -> int:
        count = Evaluator(scope.values).value(stage.count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise spec_error(
                "E219", f"repeat needs a whole number, got {describe(count)}", stage.count.span
            )
        if count == 0:
            raise spec_error(
                "E219",
                "repeat 0 repeats nothing",
                stage.count.span,
                hint="repeat takes a count from 1; to leave the stage out, delete the line",
            )
        if count > self.limits.max_repeat:
            shown = f"{count:,}" if count <= MAX_VALUE else "a number this large"
            raise spec_error(
                "E401",
                f"repeat {shown} is over the limit of {self.limits.max_repeat:,}",
                stage.count.span,
                hint="raise it with --max-repeat",
            )
        return count

    # ---- blocks and shared sub-networks ---------------------------------------------------

    def block_call(
        self, block: ast.Block, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> str:
        """A block called where one tensor is expected: a stage of a chain."""
        outs = self.block_outputs(block, stage, scope, src, label)
        if len(outs) != 1:
            names = ", ".join(outputs_of(block)) or "a, b"
            raise spec_error(
                "E220",
                f"block '{block.name}' gives {len(outs)} tensors, where one is expected",
                stage.span,
                hint=f"name each: {names} = {block.name}(...)",
            )
        return outs[0]

    def block_outputs(
        self, block: ast.Block, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> tuple[str, ...]:
        """Expand a block call; the tensors of its `output` statement, else its last result."""
        check_call(block, stage, scope, self.limits)
        src = self.need(src, stage.span)
        # `in` is bound before the defaults, so that `block b(c=in.c)` reads the call's input
        values = bind_arguments(block, stage, scope, {**self.globals, "in": self.sizes(src)})
        name = scope.label(label, block.name)
        what = f"in block '{block.name}', expanded from here"
        inner = scope.child(f"{scope.prefix}{name}.", values, stage.span, what, block.name)
        inner.tensors["in"] = src
        out, outputs = self.body(block.body, inner, src)
        return outputs or (out,)

    def apply_shared(
        self, sd: SharedDef, stage: ast.Op | ast.Call, scope: Scope, src: str, label: str | None
    ) -> str:
        name = sd.definition.name
        if isinstance(stage, ast.Call):
            if len(stage.args) != 1 or not isinstance(stage.args[0].value, ast.Name):
                raise spec_error(
                    "E223", f"shared '{name}' is applied to one tensor, e.g. {name}(x)", stage.span
                )
            arg = stage.args[0].value
            src = self.out.tensor(arg.name, arg.span, scope)
        elif stage.args:
            raise spec_error("E223", f"shared '{name}' takes no arguments", stage.span)
        label = scope.label(label, name)
        what = f"in shared '{name}', applied here"
        src = self.need(src, stage.span)
        values = {**sd.scope.values, "in": self.sizes(src)}
        inner = sd.scope.child(f"{scope.prefix}{label}.", values, stage.span, what)
        inner.stack, inner.sites = scope.stack, (*scope.sites, (what, stage.span))
        inner.tensors["in"] = src
        with self.out.sharing.applying(inner.prefix, sd):
            out, _ = self.body(sd.definition.body, inner, src)
        return out


def _arity(opdef: OpDef, n: int, span: Span) -> None:
    want = opdef.arity or 2
    if n < want or (opdef.arity is not None and n != want):
        exactly = "exactly" if opdef.arity else "at least"
        raise spec_error("E217", f"'{opdef.name}' needs {exactly} {want} inputs, got {n}", span)


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
            for a in st.args:
                if isinstance(a.value, ast.Name):
                    found.add(a.value.name)
                elif isinstance(a.value, ast.Chain):
                    for s in a.value.stages:
                        stage(s)

    for st in stmts:
        if isinstance(st, ast.ChainStmt | ast.Assign | ast.Unpack):
            for s in st.chain.stages:
                stage(s)
        elif isinstance(st, ast.Output):
            found.update(n.name for n in st.names)
    return found


def _check_kinds(st: ast.Output) -> None:
    """A declared output kind is one netspec knows (`output code: embedding`)."""
    for kind in st.kinds:
        if kind is not None and kind.name not in ast.OUTPUT_KINDS:
            reserved = kind.name == "boxes"
            raise spec_error(
                "E240",
                "the output kind 'boxes' is reserved for detection heads, not yet declarable"
                if reserved
                else f"unknown output kind '{kind.name}'",
                kind.span,
                hint=(None if reserved else did_you_mean(kind.name, ast.OUTPUT_KINDS))
                or f"known kinds: {', '.join(ast.OUTPUT_KINDS)}",
            )


def _check_output(st: ast.Output, said: ast.Output | None) -> None:
    """A body has one `output` statement, naming every output; each kind is one netspec
    knows (`output code: embedding`)."""
    if said is not None:
        names = ", ".join(n.name for n in (*said.names, *st.names))
        raise SpecError(
            [
                Diagnostic(
                    "E220",
                    "a second 'output' statement: a body names its outputs once",
                    st.span,
                    hint=f"name them all in one: output {names}",
                ).with_note("the first 'output'", said.span)
            ]
        )
    _check_kinds(st)


def _named(st: ast.Statement) -> tuple[str, ...]:
    """The tensor names a statement defines (none for a chain or an `output`)."""
    if isinstance(st, ast.Assign):
        return (st.target,)
    if isinstance(st, ast.Unpack):
        return tuple(t.name for t in st.targets if t.name != DISCARD)
    return ()
