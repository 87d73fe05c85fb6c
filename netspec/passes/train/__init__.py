"""train: validate the chosen network's `train` section, with the `--set` training values
applied. A dataset netspec cannot load is a warning here (W506): the network still
compiles, and `netspec train` refuses the dataset (E506).

- `models.py`   the section's models (TrainConfig and its parts)
- `section.py`  the validation, the `--set` keys it takes (TRAIN_KEYS), the dataset check
"""

from __future__ import annotations

from netspec.passes.state import CompileState, Pass, need
from netspec.passes.train.section import train_config, unknown_dataset


def train(state: CompileState) -> None:
    section = need(state.program).trains.get(need(state.network).name)
    if section is None:
        return
    unknown = unknown_dataset(section, "warning")
    if unknown is not None:
        state.diagnostics.append(unknown)
    shape = need(state.network).inputs[0].shape
    channels = shape[0] if len(shape) == 3 and isinstance(shape[0], int) else None
    state.train = train_config(section, need(state.train_overrides), channels)


TRAIN = Pass(
    "train",
    train,
    needs=("program", "network", "train_overrides"),
    ensures=("train",),
    optional=("train",),
)
