"""The datasets netspec can load, by the name a train section gives them
(`train lenet on mnist`): `netspec compile` warns of a name netspec cannot load (W506),
and `netspec train` refuses it (E506). Imports nothing heavy: the front end checks names with it.

Each dataset is a record (`netspec.data.record.Dataset`): how to fetch and verify it, how
to read it, its channels, size, class names and task. A stage asks the record; no code
outside netspec/data compares a dataset's name. A new dataset is one module in
netspec/data/datasets/ that defines its record and reader and lists it in ``RECORDS``
(found there by `discover`), and its row in docs/language.md (tests/test_datasets.py checks
both).

>>> DATASETS["mnist"].needs_data, DATASETS["mnist"].labels[:3]
(False, ('0', '1', '2'))
>>> known()
'mnist, fashion_mnist, cifar10, idx, folders, npz, mnist_scenes, mnist_windows'
"""

from __future__ import annotations

import os
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

from netspec.data.datasets import discover
from netspec.data.record import AS_THEY_ARE, Arrays, Dataset, Fit, Log, SceneSettings
from netspec.errors import DataError

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "FAMILIES",
    "SCENE_DATASETS",
    "SCENE_SWITCHES",
    "Dataset",
    "Family",
    "dataset",
    "known",
    "read_arrays",
]

# name -> record, in the order a person reads them (E506 lists them so)
DATASETS = MappingProxyType({d.name: d for d in discover()})
DEFAULT_DATASET = "mnist"  # what a spec without a train section trains on
SCENE_DATASETS = tuple(n for n, d in DATASETS.items() if d.scenes)  # a `scenes` setting's

# The scenes' background families (netspec.data.randomize draws them); the last is used
# by no training setting, for measuring the "reality gap".
Family = Literal["noise", "gradient", "texture", "clutter", "pink", "leaves", "print", "cells"]
FAMILIES: tuple[str, ...] = get_args(Family)
# what domain randomization can switch on, one by one (netspec.data.scenes)
SCENE_SWITCHES = ("backgrounds", "distractors", "contrast", "brightness", "invert", "blur")


def known() -> str:
    """The registered names, in order."""
    return ", ".join(DATASETS)


def dataset(name: str | None) -> Dataset | None:
    """The record of ``name``, or None for no name or one netspec cannot load."""
    return DATASETS.get(name) if name is not None else None


def read_arrays(
    dataset: str,
    data: str | os.PathLike[str] | None,
    log: Log,
    settings: SceneSettings | None = None,
    fit: Fit = AS_THEY_ARE,
) -> Arrays:
    """Both splits of the dataset a spec names (one of `DATASETS`), or of the data at
    ``--data``; ``settings`` are the train section's scenes (for the datasets it draws),
    ``fit`` the network's input (for images of any size)."""
    record = DATASETS[dataset]
    if data is None and record.needs_data:
        raise DataError(
            f"the dataset '{dataset}' is read from --data: "
            "pass --data DIR (IDX files, train/ and test/ image folders) or --data FILE.npz"
        )
    return record.reader(Path(data) if data is not None else None, log, settings, fit)
