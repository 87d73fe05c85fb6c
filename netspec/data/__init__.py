"""Datasets as numpy arrays: IDX files, MNIST (fetched, verified, cached), .npz, image folders.

This layer imports numpy but never torch, so checking a spec stays light.
"""

from __future__ import annotations

from netspec.data.folders import ImageFolder, LabeledArrays, load_image_folder, load_npz
from netspec.data.idx import IdxPair, load_idx_pair, read_idx, write_idx
from netspec.data.mnist import DEFAULT_MIRRORS, MnistData, default_cache_dir, load_mnist
from netspec.errors import DataError

__all__ = [
    "DEFAULT_MIRRORS",
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
    "read_idx",
    "write_idx",
]
