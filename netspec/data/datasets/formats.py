"""Datasets named by their format, read from ``netspec train --data PATH``: IDX files
(MNIST's four names), ``train/`` and ``test/`` image folders, or an ``.npz``. Whichever
is named, the path is read as what it holds (netspec.data.arrays.read_given)."""

from __future__ import annotations

from pathlib import Path

from netspec.data.record import AS_THEY_ARE, Arrays, Dataset, Fit, Log, SceneSettings
from netspec.errors import DataError


def read(
    data: Path | None, log: Log, settings: SceneSettings | None, fit: Fit = AS_THEY_ARE
) -> Arrays:
    """The data at ``--data``: its class names are its folders' (image folders) or
    numbers (IDX files, an .npz)."""
    from netspec.data.arrays import read_given

    if data is None:
        raise DataError(
            "this dataset is read from --data: pass --data DIR (IDX files, train/ and test/ "
            "image folders) or --data FILE.npz"
        )
    return read_given(data, log, fit=fit)


IDX = Dataset(
    "idx",
    "an IDX pair of images and labels, read from --data DIR",
    read,
    task="classes",
    sample="image",
    needs_data=True,
    rank=30,
)
FOLDERS = Dataset(
    "folders",
    "train/ and test/ image folders, one per class, from --data DIR",
    read,
    task="classes",
    sample="image",
    needs_data=True,
    rank=40,
)
NPZ = Dataset(
    "npz",
    "an .npz file with arrays x and y (or only x), from --data FILE.npz",
    read,
    task=None,
    sample="sample",
    needs_data=True,
    rank=50,
)

RECORDS = (IDX, FOLDERS, NPZ)  # what netspec.data.datasets finds here
