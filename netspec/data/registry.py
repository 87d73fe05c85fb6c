"""The datasets netspec can load, by the name a train section gives them
(`train lenet on mnist`), so that `netspec compile` refuses a name netspec cannot load
before anything runs. Imports nothing heavy: the front end checks names with it.

A new kind of dataset registers itself here with `register(...)`; its loader lives
beside the others in netspec/data/ and is chosen by `netspec.train.data`.

>>> DATASETS["mnist"].needs_data
False
>>> known()
'mnist, idx, folders, npz, mnist_scenes, mnist_windows'
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args


@dataclass(frozen=True)
class Dataset:
    """A name a train section may give, what it is, and whether it needs `--data`."""

    name: str
    summary: str
    needs_data: bool  # read from `netspec train --data PATH`, not fetched by netspec


DATASETS: dict[str, Dataset] = {}


def register(dataset: Dataset) -> Dataset:
    """Add a dataset; a name registered twice is a mistake in netspec itself."""
    assert dataset.name not in DATASETS, dataset.name
    DATASETS[dataset.name] = dataset
    return dataset


def known() -> str:
    """The registered names, in the order they were registered."""
    return ", ".join(DATASETS)


register(Dataset("mnist", "MNIST's digits, fetched and cached (or read from --data DIR)", False))
register(Dataset("idx", "an IDX pair of images and labels, read from --data DIR", True))
register(Dataset("folders", "train/ and test/ image folders, one per class, from --data DIR", True))
register(Dataset("npz", "an .npz file with arrays x and y (or only x), from --data FILE.npz", True))
register(
    Dataset(
        "mnist_scenes",
        "generated scenes of MNIST digits with their boxes (or a scenes directory, --data DIR)",
        False,
    )
)
register(
    Dataset(
        "mnist_windows",
        "28x28 windows cut from generated scenes: 10 digits and background (or --data DIR)",
        False,
    )
)
SCENE_DATASETS = ("mnist_scenes", "mnist_windows")  # the ones a `scenes` setting configures

# The scenes' background families (netspec.data.randomize draws them); the last is used
# by no training setting, for measuring the "reality gap".
Family = Literal["noise", "gradient", "texture", "clutter", "cells"]
FAMILIES: tuple[str, ...] = get_args(Family)
# what domain randomization can switch on, one by one (netspec.data.scenes)
SCENE_SWITCHES = ("backgrounds", "distractors", "contrast", "brightness", "invert", "blur")
