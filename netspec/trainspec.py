"""The `train` section's models and their validation, by the name that `netspec train`,
the command line and the benchmarks import them by. They live with the pass that checks
them, in netspec/passes/train/ (models.py, section.py), so that imports go one way: the
passes below, this module above them."""

from __future__ import annotations

from netspec.passes.train.models import (
    CROP_RATIO,
    Augment,
    Cascade,
    Loss,
    Normalize,
    Optimizer,
    Scenes,
    Schedule,
    TrainConfig,
)
from netspec.passes.train.section import TRAIN_KEYS, require_dataset, train_config

__all__ = [
    "CROP_RATIO",
    "TRAIN_KEYS",
    "Augment",
    "Cascade",
    "Loss",
    "Normalize",
    "Optimizer",
    "Scenes",
    "Schedule",
    "TrainConfig",
    "require_dataset",
    "train_config",
]
