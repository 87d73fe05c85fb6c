"""The compile state every pass reads and writes, and the record that says what a pass needs.

A pass is one function over one :class:`CompileState`. Its :class:`Pass` record names
the state fields it reads (`needs`) and the ones it fills in (`ensures`);
:func:`run_passes` checks both, so a pass put before what it depends on fails at
once, naming the field, instead of deep inside with an `AttributeError`:

>>> def double(state: CompileState) -> None:
...     state.text = state.text * 2
>>> late = Pass("late", double, needs=("graph",), ensures=())
>>> check_order((late,))
Traceback (most recent call last):
...
netspec.passes.state.PipelineError: pass 'late' needs 'graph', which no earlier pass ensures

Errors are diagnostics with severity "error": a pass adds them to
`state.diagnostics` (or raises SpecError, whose diagnostics the runner adds there), and
the runner stops after the first pass that left any, with the fields it had reached.
Warnings stay in `state.diagnostics` for the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from netspec.diagnostics import Diagnostic, Sources, SpecError
from netspec.ir import Graph
from netspec.limits import Limits
from netspec.syntax import ast

if TYPE_CHECKING:
    from netspec.passes.define import Program
    from netspec.passes.expand.facts import Expansion
    from netspec.passes.infer import Inferred
    from netspec.passes.train.models import TrainConfig

T = TypeVar("T")
# Gives the text of a file that a spec `use`s (an absolute path): the disk by default
# (passes/load.py), an editor's unsaved buffers for a language server.
Reader = Callable[[Path], str]


class PipelineError(Exception):
    """A pass list whose order cannot work: a bug in netspec, not a mistake in a spec."""


@dataclass
class CompileState:
    """Everything one compilation knows so far. The first block is the request; each later
    field is None until the pass that ensures it has run."""

    text: str
    file: str = "<string>"
    network_name: str | None = None
    limits: Limits = field(default_factory=Limits)
    allow_outside: bool = False
    overrides: Mapping[str, Any] = field(default_factory=dict)
    read: Reader | None = None  # None: read `use`d files from the disk, within `limits`
    diagnostics: list[Diagnostic] = field(default_factory=list)
    # load
    items: list[ast.Item] | None = None  # every definition of every file read, in order
    sources: Sources | None = None
    comments: list[ast.Comment] | None = None  # every comment of every file read, in order
    # define
    program: Program | None = None
    # bind
    network: ast.Network | None = None
    const_overrides: dict[str, Any] | None = None
    symbols: dict[str, int] | None = None
    train_overrides: dict[str, Any] | None = None
    # constants
    values: dict[str, Any] | None = None
    # expand
    graph: Graph | None = None
    expansion: Expansion | None = None
    # infer
    inferred: Inferred | None = None
    # train (None as well when the network has no train section)
    train: TrainConfig | None = None
    # lint
    warnings: list[Diagnostic] | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]


REQUEST = (
    "text",
    "file",
    "network_name",
    "limits",
    "allow_outside",
    "overrides",
    "read",
    "diagnostics",
)


@dataclass(frozen=True)
class Pass:
    """One step of the pipeline: its function, the fields it reads and those it fills in."""

    name: str
    run: Callable[[CompileState], None]
    needs: tuple[str, ...]
    ensures: tuple[str, ...]
    optional: tuple[str, ...] = ()  # ensured fields that may legitimately stay None


def need(value: T | None, name: str = "field") -> T:
    """A field the running pass declared in `needs` (the runner has checked it is set)."""
    if value is None:
        raise PipelineError(f"'{name}' is not set: a pass ran before the one that ensures it")
    return value


def check_order(passes: Sequence[Pass]) -> None:
    """Every field a pass needs is part of the request or ensured by an earlier pass."""
    known = {f.name for f in fields(CompileState)}
    have = set(REQUEST)
    for p in passes:
        for name in (*p.needs, *p.ensures):
            if name not in known:
                raise PipelineError(f"pass '{p.name}' names '{name}', not a CompileState field")
        for name in p.needs:
            if name not in have:
                raise PipelineError(
                    f"pass '{p.name}' needs '{name}', which no earlier pass ensures"
                )
        have.update(p.ensures)


def run_passes(state: CompileState, passes: Sequence[Pass]) -> str | None:
    """Run `passes` in order until one finds mistakes in the spec (its errors, or the
    SpecError it raised, end up in `state.diagnostics`); return that pass's name, or None
    when every pass ran. A UsageError, a mistake in the request, is raised as it comes."""
    check_order(passes)
    for p in passes:
        try:
            p.run(state)
        except SpecError as e:
            state.diagnostics += e.diagnostics
            return p.name
        if state.errors:
            return p.name
        unset = [n for n in p.ensures if n not in p.optional and getattr(state, n) is None]
        if unset:
            raise PipelineError(f"pass '{p.name}' did not set {', '.join(unset)}")
    return None
