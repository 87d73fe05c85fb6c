"""bind: choose the network to compile and sort the `--set` values by what they set.

A `--set NAME=VALUE` sets a constant, a symbolic input size (`H=64`) or a training
value (`epochs=3`); anything else, and a network name the spec does not define,
is a usage error (exit 2) that names the flag.
"""

from __future__ import annotations

from typing import Any

from netspec.diagnostics import did_you_mean
from netspec.errors import UsageError
from netspec.limits import MAX_VALUE
from netspec.passes.define import Program
from netspec.passes.state import CompileState, Pass, need
from netspec.passes.train.section import TRAIN_KEYS


def pick_network(program: Program, network: str | None) -> str:
    """The network asked for, or the only one the spec defines."""
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


def _symbolic(program: Program) -> set[str]:
    return {
        d
        for net in program.networks.values()
        for i in net.inputs
        for d in i.shape
        if isinstance(d, str)
    }


def _size(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_VALUE:
        raise UsageError(
            f"--set {key}={value}: a size must be a whole number from 1 to {MAX_VALUE:,}"
        )
    return value


def bind(state: CompileState) -> None:
    """Pick the network and split `state.overrides` into constants, sizes and training."""
    program = need(state.program)
    consts: dict[str, Any] = {}
    symbols: dict[str, int] = {}
    train: dict[str, Any] = {}
    symbolic = _symbolic(program)
    for key, value in state.overrides.items():
        if key in program.consts:
            consts[key] = value
        elif key in symbolic:
            symbols[key] = _size(key, value)
        elif key in TRAIN_KEYS:
            train[key] = value
        else:
            known = [*program.consts, *symbolic, *TRAIN_KEYS]
            raise UsageError(
                f"--set {key}: no constant, symbolic size or training setting is called '{key}'",
                hint=did_you_mean(key, known),
            )
    state.const_overrides, state.symbols, state.train_overrides = consts, symbols, train
    state.network = program.networks[pick_network(program, state.network_name)]


BIND = Pass(
    "bind",
    bind,
    needs=("program", "overrides", "network_name"),
    ensures=("network", "const_overrides", "symbols", "train_overrides"),
)
