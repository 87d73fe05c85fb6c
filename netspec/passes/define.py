"""define: index every definition by name, into one Program.

Names are global to a compilation. A name defined twice, a name that shadows an
operation, a symbolic input size that is also a constant's name, a table that is not
feature-map numbers, a kernel that is not rectangular or is divided by zero, an input
with a size under 1: refused here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netspec.diagnostics import Collector, Diagnostic, Sources, did_you_mean
from netspec.limits import MAX_VALUE
from netspec.ops import REGISTRY
from netspec.passes.state import CompileState, Pass, need
from netspec.syntax import ast

Definition = ast.Const | ast.Table | ast.Kernel | ast.Block | ast.Network


@dataclass
class Program:
    """Every definition of a compilation, with the text of every file read."""

    consts: dict[str, ast.Const] = field(default_factory=dict)
    tables: dict[str, ast.Table] = field(default_factory=dict)
    kernels: dict[str, ast.Kernel] = field(default_factory=dict)
    blocks: dict[str, ast.Block] = field(default_factory=dict)
    networks: dict[str, ast.Network] = field(default_factory=dict)
    trains: dict[str, ast.Train] = field(default_factory=dict)
    sources: Sources = field(default_factory=Sources)
    main_file: str = "<string>"
    main_text: str = ""

    def definition(self, name: str) -> Definition | None:
        for table in (self.consts, self.tables, self.kernels, self.blocks, self.networks):
            if name in table:
                return table[name]
        return None


class _Definer:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.errors = Collector()

    def define(self, item: ast.Item) -> None:
        if isinstance(item, ast.Train):
            self._train(item)
            return
        assert not isinstance(item, ast.Use)
        if item.name in REGISTRY:
            self.errors.error(
                "E105",
                f"'{item.name}' is the name of an operation",
                item.span,
                hint="choose another name",
            )
            return
        first = self.program.definition(item.name)
        if first is not None:
            self.errors.add(
                Diagnostic("E106", f"'{item.name}' is defined twice", item.span).with_note(
                    "first defined here", first.span
                )
            )
            return
        if isinstance(item, ast.Const):
            self.program.consts[item.name] = item
        elif isinstance(item, ast.Table):
            self._table(item)
        elif isinstance(item, ast.Kernel):
            self._kernel(item)
        elif isinstance(item, ast.Block):
            self.program.blocks[item.name] = item
        else:
            self._network(item)

    def _train(self, item: ast.Train) -> None:
        trains = self.program.trains
        if item.network in trains:
            self.errors.add(
                Diagnostic(
                    "E106", f"a train section for '{item.network}' is given twice", item.span
                ).with_note("first given here", trains[item.network].span)
            )
        trains[item.network] = item

    def _table(self, item: ast.Table) -> None:
        if any(v != int(v) or v < 0 for row in item.matrix.rows for v in row):
            self.errors.error(
                "E107",
                f"table '{item.name}' must list feature-map numbers (whole numbers from 0)",
                item.matrix.span,
            )
        self.program.tables[item.name] = item

    def _kernel(self, item: ast.Kernel) -> None:
        widths = {len(r) for r in item.matrix.rows}
        if len(widths) != 1:
            self.errors.error(
                "E108",
                f"kernel '{item.name}' is not rectangular: its rows have {sorted(widths)} entries",
                item.matrix.span,
            )
        if item.divisor is not None and item.divisor.value == 0:
            self.errors.error(
                "E204",
                "division by zero",
                item.divisor.span,
                hint="divide by a number other than 0, e.g. / 9 for a 3x3 box",
            )
        self.program.kernels[item.name] = item

    def _network(self, item: ast.Network) -> None:
        for inp in item.inputs:
            bad = [d for d in inp.shape if not _good_dim(d)]
            if bad:
                size = f"{bad[0]:,}" if isinstance(bad[0], int) else f"'{bad[0]}'"
                self.errors.error(
                    "E109",
                    f"input '{inp.name}' has a size of {size}; every size is a whole "
                    f"number from 1 to {MAX_VALUE:,}, or a name such as H",
                    inp.span,
                )
        self.program.networks[item.name] = item

    def trains_named(self) -> None:
        """A train section names a network of the compilation (`train lenet` copied from
        another file would otherwise be skipped without a word)."""
        networks = self.program.networks
        for train in self.program.trains.values():
            if train.network in networks:
                continue
            names = ", ".join(f"'{n}'" for n in networks) or "none"
            self.errors.error(
                "E111",
                f"a train section for '{train.network}', but no network is called that",
                train.span,
                hint=did_you_mean(train.network, networks) or f"the networks here: {names}",
            )

    def symbols_apart(self) -> None:
        """A symbolic size may not share a constant's name: `const SIZE = 64` and
        `image: 3xSIZExSIZE` would leave the reader unsure which one the shape means."""
        consts = self.program.consts
        for net in self.program.networks.values():
            for inp in net.inputs:
                for dim in dict.fromkeys(d for d in inp.shape if isinstance(d, str)):
                    if dim in consts:
                        self.errors.add(
                            Diagnostic(
                                "E110",
                                f"input '{inp.name}' has a symbolic size '{dim}', "
                                f"and '{dim}' is also a constant",
                                inp.span,
                                hint="write the size as a number, or give the symbolic "
                                "size a name of its own",
                            ).with_note(f"the constant '{dim}' is defined here", consts[dim].span)
                        )


def _good_dim(dim: int | str) -> bool:
    if isinstance(dim, str):
        return dim[:1].isalpha()
    return 1 <= dim <= MAX_VALUE


def define(state: CompileState) -> None:
    """Index `state.items` into a Program; every mistake in one go."""
    program = Program(sources=need(state.sources), main_file=state.file, main_text=state.text)
    definer = _Definer(program)
    for item in need(state.items):
        definer.define(item)
    definer.symbols_apart()
    definer.trains_named()
    state.diagnostics += definer.errors.items
    state.program = program


DEFINE = Pass("define", define, needs=("items", "sources"), ensures=("program",))
