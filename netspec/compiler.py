"""The pipeline, in one place: parse and resolve -> expand -> infer -> check.

`compile()` is the Python API; `netspec compile` prints what it returns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netspec.diagnostics import Diagnostic, SpecError, did_you_mean
from netspec.errors import UsageError
from netspec.ir import Graph
from netspec.limits import Limits
from netspec.passes.check import check, unused_definitions
from netspec.passes.expand import expand
from netspec.passes.infer import Inferred, Layer, Totals, infer
from netspec.passes.resolve import Program, read_spec, resolve
from netspec.passes.values import Evaluator
from netspec.trainspec import TRAIN_KEYS, TrainConfig, train_config

if TYPE_CHECKING:
    import torch  # noqa: TID251 (a type only: torch is imported when lowering)


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

    def to_json(self) -> dict[str, Any]:
        from netspec.report import to_json

        return to_json(self)

    def to_torch(self) -> torch.nn.Module:
        from netspec.lower import to_torch

        return to_torch(self)


def _split_overrides(
    program: Program, overrides: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, int], dict[str, Any]]:
    consts, symbols, train = {}, {}, {}
    symbolic = {
        d
        for net in program.networks.values()
        for i in net.inputs
        for d in i.shape
        if isinstance(d, str)
    }
    for key, value in overrides.items():
        if key in program.consts:
            consts[key] = value
        elif key in symbolic:
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise UsageError(f"--set {key}: a size must be a positive whole number")
            symbols[key] = value
        elif key in TRAIN_KEYS:
            train[key] = value
        else:
            known = [*program.consts, *symbolic, *TRAIN_KEYS]
            raise UsageError(
                f"--set {key}: no constant, symbolic size or training setting is called '{key}'",
                hint=did_you_mean(key, known),
            )
    return consts, symbols, train


def _globals(program: Program, overrides: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, table in program.tables.items():
        values[name] = tuple(tuple(int(v) for v in row) for row in table.matrix.rows)
    for name, kernel in program.kernels.items():
        values[name] = kernel.matrix.rows
    for name, const in program.consts.items():
        if name in overrides:
            values[name] = overrides[name]
        else:
            values[name] = Evaluator(values).value(const.value)
    return values


def _pick_network(program: Program, network: str | None) -> str:
    names = list(program.networks)
    if network is not None:
        if network not in program.networks:
            raise UsageError(
                f"no network named '{network}' (this spec defines: {', '.join(names) or 'none'})",
                hint=did_you_mean(network, names),
            )
        return network
    if not names:
        raise UsageError(
            "this spec defines no network",
            hint="a library of blocks is used from another spec with `use`",
        )
    if len(names) > 1:
        raise UsageError(
            f"this spec defines several networks ({', '.join(names)})",
            hint="choose one with --network NAME",
        )
    return names[0]


def compile_text(
    text: str,
    file: str = "<string>",
    network: str | None = None,
    *,
    limits: Limits | None = None,
    allow_outside: bool = False,
    **overrides: Any,
) -> Compiled:
    limits = limits or Limits()
    program = resolve(text, file, limits, allow_outside)
    consts, symbols, train_overrides = _split_overrides(program, overrides)
    net = program.networks[_pick_network(program, network)]
    graph, expander = expand(program, net, limits, _globals(program, consts), symbols)
    inferred = infer(graph)
    lints = check(inferred, limits)
    train = program.trains.get(net.name)
    config = train_config(train, train_overrides) if train is not None else None
    warnings = [*unused_definitions(program), *expander.warnings.items, *lints]
    return Compiled(program, graph, inferred, config, warnings)


def compile(
    source: str | Path,
    network: str | None = None,
    *,
    limits: Limits | None = None,
    allow_outside: bool = False,
    **overrides: Any,
) -> Compiled:
    """Compile a spec given as a path or as text; raise SpecError on any mistake in it.

    Keyword overrides set constants, symbolic sizes (`H=64`) and training values
    (`epochs=3`), as `--set NAME=VALUE` does on the command line.
    """
    limits = limits or Limits()
    if isinstance(source, Path) or ("\n" not in source and source.endswith(".net")):
        path = Path(source)
        if not path.is_file():
            raise UsageError(f"no such spec file: {path}")
        text = read_spec(path, limits)
        return compile_text(
            text, str(path), network, limits=limits, allow_outside=allow_outside, **overrides
        )
    return compile_text(
        source, "<string>", network, limits=limits, allow_outside=allow_outside, **overrides
    )


__all__ = ["Compiled", "SpecError", "UsageError", "compile", "compile_text"]
