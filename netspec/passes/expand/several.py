"""Statements that name several results: `a, b = split 58`, `a, b = chunk 2`,
`x1, x2 = unit(c)`.

The chain's stages before the last one give one tensor each, as in any chain; the last
gives as many tensors as there are names. `split` and `chunk` (netspec/ops/channels.py)
become one `slice` node per name, named after it, so that each node of the graph still
has one output; a block gives the tensors of its `output a, b` statement, its nodes under
the call's name as usual. The name `_` discards its tensor (a piece of `split` is then
not computed at all). Such a statement does not move the cursor: like a named result
that is used by name, it is a branch.
"""

from __future__ import annotations

from collections.abc import Container
from typing import TYPE_CHECKING, Any

from netspec.diagnostics import Diagnostic, Span, SpecError, did_you_mean, spec_error
from netspec.ops import ShapeError
from netspec.ops.channels import SEVERAL, slices
from netspec.passes.arguments import plural
from netspec.passes.expand.scope import Scope, Skip
from netspec.passes.values import Evaluator, Word
from netspec.syntax import ast

if TYPE_CHECKING:
    from netspec.passes.expand.walk import Walker


def names_span(targets: tuple[ast.Name, ...]) -> Span:
    """From the first name on the left of `=` to the last."""
    first, last = targets[0].span, targets[-1].span
    return Span(first.file, first.line, first.col, last.end_line, last.end_col)


DISCARD = "_"  # `kept, _ = chunk 2`: the name of a tensor not kept


def check_names(st: ast.Unpack, scope: Scope, blocks: Container[str]) -> None:
    """Each name but `_` is new here and written once (E210)."""
    seen: set[str] = set()
    for target in st.targets:
        if target.name == DISCARD:
            continue
        if target.name in seen:
            raise spec_error(
                "E210", f"'{target.name}' is named twice", target.span, hint="choose another name"
            )
        seen.add(target.name)
        scope.fresh(target.name, target.span, blocks)


def unpack(walker: Walker, st: ast.Unpack, scope: Scope, src: str) -> tuple[str, ...]:
    """The tensors `st`'s chain gives, one per name on its left."""
    stages = st.chain.stages
    head = stages[0]
    if isinstance(head, ast.Op) and not head.args and head.name in scope.tensors:
        src, stages = walker.out.tensor(head.name, head.name_span, scope), stages[1:]
    if not stages:
        assert isinstance(head, ast.Op)
        raise _one_tensor(f"'{head.name}' is one tensor", head.span, st.targets)
    for stage in stages[:-1]:
        src = walker.stage(stage, scope, src, None)
    last = stages[-1]
    if not isinstance(last, ast.Op | ast.Call):
        what = "repeat" if isinstance(last, ast.Repeat) else f"'{last.name}'"
        raise _one_tensor(f"{what} gives one tensor", last.span, st.targets)
    return several(walker, last, scope, src, st.targets)


def several(
    walker: Walker, stage: ast.Op | ast.Call, scope: Scope, src: str, targets: tuple[ast.Name, ...]
) -> tuple[str, ...]:
    """The tensors the last stage of `a, b = ...` gives, one per name."""
    stage, scope = walker.resolve(stage, scope)
    if stage.name in scope.tensors or stage.name in scope.shared:
        block = None
    else:
        block = walker.program.blocks.get(stage.name)
        if block is None and stage.name in SEVERAL:
            return split(walker, stage, scope, src, targets)
    if block is None:
        kind = "is a tensor" if stage.name in scope.tensors else "gives one tensor"
        raise _one_tensor(f"'{stage.name}' {kind}", stage.span, targets)
    before = len(walker.errors.items)
    outs = walker.block_outputs(block, stage, scope, src, stage.alias)
    if len(outs) != len(targets):
        if len(walker.errors.items) > before:
            raise Skip  # the block's own mistakes are reported; its outputs may be missing
        raise _count_error(block, len(outs), targets)
    return outs


def _one_tensor(what: str, span: Span, targets: tuple[ast.Name, ...]) -> SpecError:
    n = len(targets)
    return spec_error(
        "E241",
        f"{what}, but {n} names are given",
        span,
        hint="several names take a stage that gives several tensors: split, chunk, or a "
        "block with several outputs (`output a, b`)",
    )


def split(
    walker: Walker, stage: ast.Op | ast.Call, scope: Scope, src: str, targets: tuple[ast.Name, ...]
) -> tuple[str, ...]:
    """`split` or `chunk`: one `slice` node per name, each named after it (none for `_`,
    whose place in the result is empty)."""
    word = stage.name
    if stage.alias is not None:
        raise spec_error(
            "E241",
            f"the tensors {word} gives are named on the left of '=', not with 'as'",
            stage.span,
            hint=f"write {', '.join(t.name for t in targets)} = {word} ...",
        )
    arg = _argument(stage, scope)
    src = walker.need(src, stage.span)
    try:
        sizes = SEVERAL[word](arg, walker.shape_of(src))
    except ShapeError as e:
        raise spec_error("E241", e.message, stage.span, hint=e.hint) from None
    if len(sizes) != len(targets):
        listed = ", ".join(map(str, sizes))
        raise spec_error(
            "E241",
            f"{word} gives {plural(len(sizes), 'tensor')} here ({listed} maps), "
            f"but {plural(len(targets), 'name')} {'is' if len(targets) == 1 else 'are'} given",
            names_span(targets),
            hint=f"name each of the {len(sizes)} tensors, or make {len(targets)}: "
            + _fitting(sum(sizes), len(targets)),
        )
    return tuple(
        ""
        if t.name == DISCARD
        else walker.out.emit(scope, t.name, "slice", p, (walker.out.use(src),), stage.span)
        for t, p in zip(targets, slices(sizes), strict=True)
    )


def _fitting(c: int, n: int) -> str:
    """How to cut `c` maps into `n` pieces: `chunk n` where it divides them, else sizes."""
    if c % n == 0:
        return f"chunk {n} (or split {c // n})"
    return f"split [...] with {n} sizes that add up to {c}"


def _argument(stage: ast.Op | ast.Call, scope: Scope) -> Any:
    """`split` and `chunk` take one value: a size or a count (`split` also a list of sizes)."""
    word = stage.name
    for arg in stage.args:
        if arg.name is not None:
            raise spec_error(
                "E225",
                f"'{word}' has no parameter '{arg.name}'",
                arg.span,
                hint=f"{word} takes one value: {_USE[word]}",
            )
    if len(stage.args) != 1:
        span = stage.args[1].span if stage.args else stage.span
        raise spec_error(
            "E213",
            f"'{word}' takes one value, got {len(stage.args)}",
            span,
            hint=f"{_USE[word]}; a list of sizes is written in brackets, split [24, 40]",
        )
    value = Evaluator(scope.values).value(stage.args[0].value)
    if isinstance(value, Word):
        hint = did_you_mean(value, scope.values)
        raise spec_error("E201", f"unknown name '{value}'", value.span, hint=hint)
    return value


_USE = {
    "split": "split 58 gives pieces of 58 maps, split [24, 40] pieces of those sizes",
    "chunk": "chunk 2 gives 2 pieces of equal size",
}


def unsaid(st: ast.Unpack) -> SpecError:
    """A body that ends naming several results, with no `output` to say which it gives."""
    names = ", ".join(t.name for t in st.targets)
    return spec_error(
        "E220",
        "the last statement names several results, and no 'output' says which to give",
        st.span,
        hint=f"say it after them: output {names} (or the one meant)",
    )


def outputs_of(block: ast.Block) -> tuple[str, ...]:
    """The names of a block's `output` statement, if it has one."""
    said = [st for st in block.body if isinstance(st, ast.Output)]
    return tuple(n.name for n in said[0].names) if said else ()


def _count_error(block: ast.Block, outs: int, targets: tuple[ast.Name, ...]) -> SpecError:
    """`a, b, c = unit(...)` where the block gives another number of tensors."""
    n, listed = len(targets), ", ".join(outputs_of(block))
    return SpecError(
        [
            Diagnostic(
                "E220",
                f"block '{block.name}' gives {plural(outs, 'tensor')}, "
                f"but {plural(n, 'name')} {'is' if n == 1 else 'are'} given",
                names_span(targets),
                hint=f"name each of its outputs: {listed} = {block.name}(...)"
                if listed
                else "a block gives several tensors with an 'output' statement: output a, b",
            ).with_note("the block is defined here", block.span)
        ]
    )
