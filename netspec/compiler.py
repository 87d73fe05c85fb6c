"""The pipeline, in one place: PASSES, the passes in order, each a function over one
CompileState (netspec/passes/state.py) that says what it needs and what it ensures.

    pass        module                   needs                         ensures
    load        passes/load.py           text, file, limits,           items, sources,
                                         allow_outside, read           comments
    define      passes/define.py         items, sources                program
    bind        passes/bind.py           program, overrides,           network, const_overrides,
                                         network_name                  symbols, train_overrides
    constants   passes/constants.py      program, const_overrides      values
    expand      passes/expand/           program, network, values,     graph, expansion
                                         symbols, limits
    infer       passes/infer.py          graph                         inferred
    limits      passes/limits.py         inferred, limits              -
    train       passes/train/            program, network,             train (None without a
                                         train_overrides               train section)
    lint        passes/lints.py          program, expansion, graph     warnings (LINTS: W301-W304)

Where a change goes: a new check on definitions goes in `define`, one on the network's
graph after `infer`; a new pass is a module in netspec/passes/ with one function and its
`Pass` record, added to PASSES after every pass that ensures what it needs (the runner
refuses an order that cannot work). A new warning is a rule in `passes/lints.py`.

Nothing here or below imports `netspec.report` or `netspec.lower`: they sit above and
take a `Compiled` (`netspec.report.to_json(compiled)`, `netspec.lower.to_torch(compiled)`).

`compile_file(path)` and `compile_text(text)` are the Python API; `compile(source)`
takes either: a `Path` is a file, a `str` is the spec's text. They raise on a mistake.
`analyze(text)` is the entry for tools (a formatter, a language server): it never raises
for a mistake in the spec, and returns what the passes reached, every diagnostic and every
comment; the compile functions are built on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec.diagnostics import Diagnostic, Sources, SpecError
from netspec.errors import UsageError
from netspec.ir import Graph
from netspec.limits import Limits
from netspec.passes.bind import BIND
from netspec.passes.constants import CONSTANTS
from netspec.passes.define import DEFINE, Program
from netspec.passes.expand import EXPAND
from netspec.passes.infer import INFER, Inferred, Layer, Totals
from netspec.passes.limits import LIMITS
from netspec.passes.lints import LINT
from netspec.passes.load import LOAD, read_source
from netspec.passes.state import CompileState, Pass, Reader, need, run_passes
from netspec.passes.train import TRAIN
from netspec.passes.train.models import TrainConfig
from netspec.syntax import ast

PASSES: tuple[Pass, ...] = (LOAD, DEFINE, BIND, CONSTANTS, EXPAND, INFER, LIMITS, TRAIN, LINT)


@dataclass
class Compiled:
    """A checked network: its graph, every layer's inferred facts, its training setup, and
    the warnings found on the way (the lints, a dataset netspec cannot load)."""

    program: Program
    graph: Graph
    inferred: Inferred
    train: TrainConfig | None
    warnings: list[Diagnostic] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.graph.name

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.inferred.layers

    @property
    def totals(self) -> Totals:
        return self.inferred.totals

    @property
    def source(self) -> str:
        return self.program.main_text


@dataclass(frozen=True)
class Analysis:
    """What the passes reached on one spec, for tools. A field is None (or empty) from the
    pass that stopped at a mistake on; `diagnostics` holds every error and warning found."""

    diagnostics: list[Diagnostic]
    sources: Sources  # the text of every file read, to quote lines from
    comments: list[ast.Comment]  # every comment of every file read, with its span
    items: list[ast.Item] | None  # every definition of every file read, `use`s resolved
    program: Program | None
    network: ast.Network | None
    values: dict[str, Any] | None  # the constants, evaluated
    graph: Graph | None
    inferred: Inferred | None
    train: TrainConfig | None
    # A mistake in the request rather than the spec (a --set name the spec does not have,
    # a network it does not define, no network chosen among several): the passes stopped.
    refused: UsageError | None = None

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def compiled(self) -> Compiled:
        """The checked network; raise the UsageError, or the SpecError with every error,
        that stopped the passes."""
        if self.refused is not None:
            raise self.refused
        if self.errors:
            raise SpecError(self.errors)
        return Compiled(
            need(self.program), need(self.graph), need(self.inferred), self.train, self.warnings
        )


def analyze(
    text: str,
    *,
    file: str = "<string>",
    read: Reader | None = None,
    limits: Limits | None = None,
    overrides: Mapping[str, Any] | None = None,
    network_name: str | None = None,
    allow_outside: bool = False,
) -> Analysis:
    """Run the passes on spec text as far as they go: never a SpecError, but every
    diagnostic, every comment and whatever state was reached. `file` is where the text
    comes from (`use` paths are relative to it); `read(path)` gives a `use`d file's text
    (by default the disk, bounded by `limits`), so an editor can serve unsaved buffers.

    >>> a = analyze("# tiny\\nnetwork n(x: 1x8x8) {\\n    conv 4 3x3 | dense k\\n}\\n")
    >>> a.program is not None, a.graph is None
    (True, True)
    >>> [(d.code, d.message, d.span.line, d.span.col) for d in a.diagnostics]
    [('E201', "unknown name 'k'", 3, 24)]
    >>> [(c.text, c.span.line, c.span.col) for c in a.comments]
    [('# tiny', 1, 1)]
    >>> lib = analyze('use "lib.net"\\n', file="/no/such/main.net", read=lambda p: "const k = 2")
    >>> list(lib.program.consts), lib.refused
    (['k'], UsageError('this spec defines no network'))
    """
    state = CompileState(
        text,
        file=file,
        network_name=network_name,
        limits=limits or Limits(),
        allow_outside=allow_outside,
        overrides=dict(overrides or {}),
        read=read,
    )
    refused = None
    try:
        run_passes(state, PASSES)
    except UsageError as e:
        refused = e
    return Analysis(
        diagnostics=state.diagnostics,
        sources=state.sources or Sources(),
        comments=state.comments or [],
        items=state.items,
        program=state.program,
        network=state.network,
        values=state.values,
        graph=state.graph,
        inferred=state.inferred,
        train=state.train,
        refused=refused,
    )


def compile_text(
    text: str,
    file: str = "<string>",
    network: str | None = None,
    *,
    limits: Limits | None = None,
    allow_outside: bool = False,
    **overrides: Any,
) -> Compiled:
    """Compile spec text (read from `file`, which `use` paths are relative to)."""
    analysis = analyze(
        text,
        file=file,
        limits=limits,
        overrides=overrides,
        network_name=network,
        allow_outside=allow_outside,
    )
    return analysis.compiled()


def compile_file(
    path: str | Path,
    network: str | None = None,
    *,
    limits: Limits | None = None,
    allow_outside: bool = False,
    **overrides: Any,
) -> Compiled:
    """Compile the spec file at `path`; UsageError if there is none."""
    limits = limits or Limits()
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such spec file: {path}")
    text = read_source(path, limits)
    return compile_text(
        text, str(path), network, limits=limits, allow_outside=allow_outside, **overrides
    )


def compile(
    source: str | Path,
    network: str | None = None,
    *,
    limits: Limits | None = None,
    allow_outside: bool = False,
    **overrides: Any,
) -> Compiled:
    """Compile a spec: a `Path` is read as a file, a `str` is the spec's text (never a path:
    a one-line str ending in `.net` that does not compile is refused with a hint to pass a
    Path). Raise SpecError on any mistake in the spec, UsageError on one in the call.

    Keyword overrides set constants, symbolic sizes (`H=64`) and training values
    (`epochs=3`), as `--set NAME=VALUE` does on the command line.
    """
    if isinstance(source, Path):
        return compile_file(
            source, network, limits=limits, allow_outside=allow_outside, **overrides
        )
    try:
        return compile_text(
            source, "<string>", network, limits=limits, allow_outside=allow_outside, **overrides
        )
    except SpecError:
        if "\n" not in source and source.strip().endswith(".net"):
            raise UsageError(
                f"compile() read {source!r} as the text of a spec, not as a path",
                hint="pass a Path, or call compile_file(), to compile a file",
            ) from None
        raise


__all__ = [
    "PASSES",
    "Analysis",
    "Compiled",
    "SpecError",
    "UsageError",
    "analyze",
    "compile",
    "compile_file",
    "compile_text",
]
