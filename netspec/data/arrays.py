"""A dataset as numpy arrays, both splits, channels first: `read_arrays` asks the
dataset's record for its reader; the readers share what is here, the formats a path given
as ``--data`` may hold (IDX files, ``train/`` and ``test/`` image folders, an ``.npz``),
told apart by what the path is, whichever dataset the spec names.

Images keep their pixel units (uint8, or floats as stored); netspec.train.data scales
them, fits them to the network's input and puts them on the device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from netspec.data.fetch import MnistData, load_idx_files
from netspec.data.folders import load_image_folder, load_npz_targets
from netspec.data.record import AS_THEY_ARE, Arrays, Fit, Log, Source, held_out
from netspec.data.sizing import train_size
from netspec.data.sources import MNIST
from netspec.data.stream import StreamedImages, open_image_folder
from netspec.errors import DataError

__all__ = ["Arrays", "SplitArrays", "data_format", "read_given", "read_test_split"]

Format = Literal["npz", "folders", "idx"]


class SplitArrays(NamedTuple):
    """One split's images, ``(N, H, W)`` or ``(N, C, H, W)``, their class labels ``(N,)``
    (None when it has none), and where they were read."""

    x: npt.NDArray[Any]
    y: npt.NDArray[np.int64] | None
    source: str


def read_fetched(
    source: Source, labels: tuple[str, ...], data: Path | None, log: Log, fit: Fit = AS_THEY_ARE
) -> Arrays:
    """A dataset in MNIST's format: ``data`` as `read_given` reads it, else ``source``'s
    files, from the cache or fetched and verified."""
    if data is not None:
        return read_given(data, log, source, labels, fit)
    return _from_idx(load_idx_files(source, log=log), labels)


def data_format(path: Path) -> Format:
    """What ``--data PATH`` holds, told by what it is: an .npz file, a folder holding
    ``train/`` and ``test/`` image folders, else IDX files."""
    if path.is_file() and path.suffix == ".npz":
        return "npz"
    if path.is_dir() and (path / "train").is_dir() and (path / "test").is_dir():
        return "folders"
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    return "idx"


def read_given(
    data: Path,
    log: Log,
    source: Source = MNIST,
    labels: tuple[str, ...] = (),
    fit: Fit = AS_THEY_ARE,
) -> Arrays:
    """Both splits of the data at ``data``: an .npz (its last sixth the test set), image
    folders (their class names; each image decoded to ``fit``) or ``source``'s four IDX
    files (MNIST's names by default; their classes named ``labels``)."""
    kind = data_format(data)
    if kind == "npz":
        return _from_npz(data, log)
    if kind == "folders":
        return _from_folders(data, log, fit)
    return _from_idx(load_idx_files(source, data, log=log), labels)


def read_test_split(data: Path, channels: int, source: Source | None = None) -> SplitArrays:
    """Only the test split of the data at ``data`` (as `read_given` reads it, IDX files by
    ``source``'s names, MNIST's by default), image folders read with ``channels`` (1 grey,
    3 RGB); an .npz's labels only when they are class labels."""
    kind = data_format(data)
    if kind == "npz":
        x, y = load_npz_targets(data)
        cut = held_out(len(x))
        labels = y[cut:] if y is not None and y.ndim == 1 and y.dtype.kind in "iu" else None
        return SplitArrays(x[cut:], labels, str(data))
    if kind == "folders":
        folder = load_image_folder(data / "test", channels=channels)
        return SplitArrays(folder.x, folder.y, str(data / "test"))
    d = load_idx_files(source or MNIST, data)
    return SplitArrays(d.test_x, d.test_y, d.source)


def _from_idx(d: MnistData, labels: tuple[str, ...]) -> Arrays:
    return Arrays(d.train_x[:, None], d.train_y, d.test_x[:, None], d.test_y, d.source, labels)


def _channels_first(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return x[:, None] if x.ndim == 3 else x


def _from_npz(path: Path, log: Log) -> Arrays:
    x, y = load_npz_targets(path)
    cut = held_out(len(x))
    if cut < 1:
        raise DataError(f"{path}: {len(x)} samples; need at least 2 (train and test)")
    log(f"reading {path}: training on the first {cut}, testing on the last {len(x) - cut}")
    x = _channels_first(x)
    if y is None:
        return Arrays(x[:cut], None, x[cut:], None, str(path))
    if y.dtype.kind == "f":
        y = _channels_first(y)  # a float map (N, H, W) is one channel
    return Arrays(x[:cut], y[:cut], x[cut:], y[cut:], str(path))


def _from_folders(path: Path, log: Log, fit: Fit) -> Arrays:
    """Both splits of image folders, read with the input's channels. With a `resize` rule
    each image is decoded straight to the input's size (training's larger for random
    resized crops); without one, the images must all have one size. Training images over
    ``fit.stream`` bytes are streamed (netspec.data.stream); the test images are held."""
    sized = fit.size is not None and fit.resize is not None
    size, resize = (fit.size, fit.resize) if sized else (None, None)
    kept = train_size(size, resize, fit.crops) if size is not None else None
    train = open_image_folder(
        path / "train", kept, fit.channels, resize=resize, log=log, stream_over=fit.stream
    )
    test = load_image_folder(path / "test", size, fit.channels, resize=resize, log=log)
    if train.classes != test.classes:
        raise DataError(
            f"{path}: train/ has classes {train.classes} but test/ has {test.classes}; "
            "expected the same class folders"
        )
    if len(train.classes) < 2:
        raise DataError(
            f"{path / 'train'}: one class folder, '{train.classes[0]}'; a classifier needs "
            "two or more: one folder per class, named as the class"
        )
    log(f"reading image folders in {path}: classes {', '.join(train.classes)}")
    return Arrays(
        train if isinstance(train, StreamedImages) else _channels_first(train.x),
        train.y,
        _channels_first(test.x),
        test.y,
        str(path),
        tuple(train.classes),
    )
