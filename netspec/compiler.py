"""The pipeline, in one place: PASSES, the passes in order, each a function over one
CompileState (netspec/passes/state.py) that says what it needs and what it ensures.

    pass        module                   needs                         ensures
    load        passes/load.py           text, file, limits,           items, sources
                                         allow_outside
    define      passes/define.py         items, sources                program
    bind        passes/bind.py           program, overrides,           network, const_overrides,
                                         network_name                  symbols, train_overrides
    constants   passes/constants.py      program, const_overrides      values
    expand      passes/expand/           program, network, values,     graph, expansion
                                         symbols, limits
    infer       passes/infer.py          graph                         inferred
    limits      passes/limits.py         inferred, limits              -
    train       passes/train.py          program, network,             train (None without a
                                         train_overrides               train section)
    lint        passes/lints.py          program, expansion, graph     warnings (LINTS: W301-W304)

Where a change goes: a new check on definitions goes in `define`, one on the network's
graph after `infer`; a new pass is a module in netspec/passes/ with one function and its
`Pass` record, added to PASSES after every pass that ensures what it needs (the runner
refuses an order that cannot work). A new warning is a rule in `passes/lints.py`.

Nothing here or below imports `netspec.report` or `netspec.lower`: they sit above and
take a `Compiled` (`netspec.report.to_json(compiled)`, `netspec.lower.to_torch(compiled)`).

`compile_file(path)` and `compile_text(text)` are the Python API; `compile(source)`
takes either: a `Path` is a file, a `str` is the spec's text.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netspec.diagnostics import Diagnostic, SpecError
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
from netspec.passes.state import CompileState, Pass, need, run_passes
from netspec.passes.train import TRAIN
from netspec.trainspec import TrainConfig

PASSES: tuple[Pass, ...] = (LOAD, DEFINE, BIND, CONSTANTS, EXPAND, INFER, LIMITS, TRAIN, LINT)


@dataclass
class Compiled:
    """A checked network: its graph, every layer's inferred facts, and its training setup."""

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
    state = CompileState(
        text,
        file,
        network,
        limits or Limits(),
        allow_outside,
        overrides,
    )
    run_passes(state, PASSES)
    return Compiled(
        need(state.program),
        need(state.graph),
        need(state.inferred),
        state.train,
        need(state.warnings),
    )


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
    "Compiled",
    "SpecError",
    "UsageError",
    "compile",
    "compile_file",
    "compile_text",
]
