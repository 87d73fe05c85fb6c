"""Datasets as numpy arrays: IDX files, MNIST and Fashion-MNIST (fetched, verified,
cached), .npz, image folders, generated scenes; `read_arrays` reads the one a spec names.

This layer imports numpy but never torch, so checking a spec stays light;
`netspec.data.registry` (each dataset's record, by the name a train section gives it)
imports neither.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netspec.data.folders import ImageFolder, LabeledArrays, load_image_folder, load_npz
    from netspec.data.idx import IdxPair, load_idx_pair, read_idx, write_idx
    from netspec.data.mnist import DEFAULT_MIRRORS, MnistData, default_cache_dir, load_mnist
    from netspec.data.record import Arrays
    from netspec.data.registry import read_arrays
    from netspec.errors import DataError

# Names load on first use (PEP 562), so that `netspec.data.registry` imports no numpy.
_HOME = {
    "Arrays": "netspec.data.record",
    "read_arrays": "netspec.data.registry",
    "ImageFolder": "netspec.data.folders",
    "LabeledArrays": "netspec.data.folders",
    "load_image_folder": "netspec.data.folders",
    "load_npz": "netspec.data.folders",
    "IdxPair": "netspec.data.idx",
    "load_idx_pair": "netspec.data.idx",
    "read_idx": "netspec.data.idx",
    "write_idx": "netspec.data.idx",
    "DEFAULT_MIRRORS": "netspec.data.mnist",
    "MnistData": "netspec.data.mnist",
    "default_cache_dir": "netspec.data.mnist",
    "load_mnist": "netspec.data.mnist",
    "DataError": "netspec.errors",
}

__all__ = [
    "DEFAULT_MIRRORS",
    "Arrays",
    "DataError",
    "IdxPair",
    "ImageFolder",
    "LabeledArrays",
    "MnistData",
    "default_cache_dir",
    "load_idx_pair",
    "load_image_folder",
    "load_mnist",
    "load_npz",
    "read_arrays",
    "read_idx",
    "write_idx",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'netspec.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value
