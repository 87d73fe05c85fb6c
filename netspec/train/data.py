"""Choose a dataset, fit it to the network's input, and keep it on the training device.

Images stay in pixel units scaled to [0, 1] (background 0), so padding and augmentation
fill with background; normalization is applied per batch, after augmentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from netspec.data import DataError, MnistData, load_image_folder, load_mnist, load_npz
from netspec.ir import Shape
from netspec.text import fmt_shape

Log = Callable[[str], None]
HOLDOUT = 6  # an .npz without a test split: its last 1/HOLDOUT is the test set


@dataclass(frozen=True)
class Arrays:
    """Both splits as numpy arrays ``(N, C, H, W)`` (any dtype) and int64 labels."""

    train_x: npt.NDArray[Any]
    train_y: npt.NDArray[np.int64]
    test_x: npt.NDArray[Any]
    test_y: npt.NDArray[np.int64]
    source: str
    labels: tuple[str, ...] = ()  # class names, when the data has them


@dataclass(frozen=True)
class Tensors:
    """Both splits on the training device: images float ``(N, C, H, W)`` in [0, 1]."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    labels: tuple[str, ...]  # one name per class

    @property
    def classes(self) -> int:
        return len(self.labels)


def read_arrays(dataset: str, data: str | os.PathLike[str] | None, log: Log) -> Arrays:
    """Read the dataset the spec names, or the one at ``--data``: IDX dir, image folders, .npz."""
    data = Path(data) if data is not None else None
    if data is None:
        if dataset != "mnist":
            raise DataError(
                f"the dataset '{dataset}' is read from --data: "
                "pass --data DIR (IDX files, train/ and test/ image folders) or --data FILE.npz"
            )
        return _from_mnist(load_mnist(log=log))
    if data.is_file() and data.suffix == ".npz":
        return _from_npz(data, log)
    if data.is_dir() and (data / "train").is_dir() and (data / "test").is_dir():
        return _from_folders(data, log)
    if not data.exists():
        raise DataError(f"{data}: no such file or directory")
    return _from_mnist(load_mnist(data, log=log))


def _from_mnist(d: MnistData) -> Arrays:
    digits = tuple(str(i) for i in range(10))
    return Arrays(d.train_x[:, None], d.train_y, d.test_x[:, None], d.test_y, d.source, digits)


def _channels_first(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return x[:, None] if x.ndim == 3 else x


def _from_npz(path: Path, log: Log) -> Arrays:
    x, y = load_npz(path)
    cut = len(x) - max(1, len(x) // HOLDOUT)
    if cut < 1:
        raise DataError(f"{path}: {len(x)} samples; need at least 2 (train and test)")
    log(f"reading {path}: training on the first {cut}, testing on the last {len(x) - cut}")
    x = _channels_first(x)
    return Arrays(x[:cut], y[:cut], x[cut:], y[cut:], str(path))


def _from_folders(path: Path, log: Log) -> Arrays:
    train = load_image_folder(path / "train")
    test = load_image_folder(path / "test")
    if train.classes != test.classes:
        raise DataError(
            f"{path}: train/ has classes {train.classes} but test/ has {test.classes}; "
            "expected the same class folders"
        )
    log(f"reading image folders in {path}: classes {', '.join(train.classes)}")
    return Arrays(
        _channels_first(train.x),
        train.y,
        _channels_first(test.x),
        test.y,
        str(path),
        tuple(train.classes),
    )


def fit_to_input(
    arrays: Arrays,
    shape: Shape,
    classes: int | None,
    limit: int | None,
    device: torch.device,
    log: Log,
) -> Tensors:
    """Scale to [0, 1], pad or resize to the input's (H, W), check channels and labels."""
    if len(shape) != 3:
        raise DataError(
            f"the network's input is {fmt_shape(shape)}; training needs images C x H x W"
        )
    channels, height, width = shape
    _check_channels(arrays, channels)
    n_classes = _check_labels(arrays, classes)
    train_x, train_y = arrays.train_x, arrays.train_y
    if limit is not None and limit < len(train_x):
        log(f"training on the first {limit} of {len(train_x)} samples (--limit)")
        train_x, train_y = train_x[:limit], train_y[:limit]
    size = (
        height if isinstance(height, int) else arrays.train_x.shape[2],
        width if isinstance(width, int) else arrays.train_x.shape[3],
    )
    src = tuple(arrays.train_x.shape[2:])
    if src != size:
        log(
            f"fitting images of {src[0]}x{src[1]} to the input's {size[0]}x{size[1]} "
            f"({'padding' if _pads(src, size) else 'resizing'})"
        )
    return Tensors(
        _tensor(train_x, size, device),
        torch.as_tensor(train_y, device=device),
        _tensor(arrays.test_x, size, device),
        torch.as_tensor(arrays.test_y, device=device),
        arrays.source,
        _labels(arrays.labels, n_classes),
    )


def _labels(names: tuple[str, ...], classes: int) -> tuple[str, ...]:
    """The data's class names, padded with numbers up to the network's output width."""
    return names[:classes] + tuple(str(i) for i in range(len(names), classes))


def _check_channels(arrays: Arrays, channels: int | str) -> None:
    found = arrays.train_x.shape[1]
    if channels != found:
        raise DataError(
            f"the network's input has {channels} channel(s), but the images of "
            f"{arrays.source} have {found}; change the input shape to {found}xHxW"
        )


def _check_labels(arrays: Arrays, classes: int | None) -> int:
    """The number of classes: the network's output width, which must cover every label."""
    labels = [int(y.max()) for y in (arrays.train_y, arrays.test_y) if y.size]
    top = max(labels, default=-1)
    if min((int(y.min()) for y in (arrays.train_y, arrays.test_y) if y.size), default=0) < 0:
        raise DataError(f"{arrays.source}: negative labels; expected 0, 1, 2, ...")
    if not len(arrays.train_y) or not len(arrays.test_y):
        raise DataError(f"{arrays.source}: an empty training or test set")
    if classes is None:
        raise DataError("the network's output is not a vector of class scores (C,)")
    if top >= classes:
        raise DataError(
            f"{arrays.source} has labels up to {top}, but the network outputs {classes} "
            f"scores; make its last layer output {top + 1}"
        )
    return classes


def _pads(src: tuple[int, ...], size: tuple[int, int]) -> bool:
    return all(s <= t and (t - s) % 2 == 0 for s, t in zip(src, size, strict=True))


def _tensor(x: npt.NDArray[Any], size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Float images in [0, 1] at ``size``: centred with background padding, else resized."""
    t = torch.as_tensor(np.ascontiguousarray(x))
    t = t.float().div(255) if t.dtype == torch.uint8 else t.float()
    src = (t.shape[2], t.shape[3])
    if src != size:
        if _pads(src, size):
            dh, dw = (size[0] - src[0]) // 2, (size[1] - src[1]) // 2
            t = F.pad(t, (dw, dw, dh, dh))
        else:
            t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous().to(device)
