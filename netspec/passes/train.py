"""train: validate the chosen network's `train` section, with the `--set` training values
applied (netspec/trainspec.py holds the section's models)."""

from __future__ import annotations

from netspec.passes.state import CompileState, Pass, need
from netspec.trainspec import train_config


def train(state: CompileState) -> None:
    section = need(state.program).trains.get(need(state.network).name)
    if section is not None:
        state.train = train_config(section, need(state.train_overrides))


TRAIN = Pass(
    "train",
    train,
    needs=("program", "network", "train_overrides"),
    ensures=("train",),
    optional=("train",),
)
