"""Choose a dataset, fit it to the network's input, and keep it on the training device.

Images stay in pixel units scaled to [0, 1] (background 0), so padding and augmentation
fill with background; normalization is applied per batch, after augmentation.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from netspec.data import DataError, MnistData, load_image_folder, load_mnist
from netspec.data.folders import load_npz_targets
from netspec.data.registry import SCENE_DATASETS
from netspec.data.scenedata import SceneArrays, SceneRequest, from_directory, generated
from netspec.data.scenes import TRAINING_FAMILIES, SceneConfig
from netspec.data.windows import LABELS
from netspec.ir import Shape
from netspec.text import fmt_shape
from netspec.train.targets import CLASSES, Target
from netspec.train.yolo import box_targets
from netspec.trainspec import Scenes

Log = Callable[[str], None]
HOLDOUT = 6  # an .npz without a test split: its last 1/HOLDOUT is the test set


@dataclass(frozen=True)
class Arrays:
    """Both splits as numpy arrays ``(N, C, H, W)`` (any dtype) and their targets: int64
    labels ``(N,)`` or per-pixel classes ``(N, H, W)``, float maps ``(N, C, H, W)``, or None
    (an `.npz` without `y`)."""

    train_x: npt.NDArray[Any]
    train_y: npt.NDArray[Any] | None
    test_x: npt.NDArray[Any]
    test_y: npt.NDArray[Any] | None
    source: str
    labels: tuple[str, ...] = ()  # class names, when the data has them


@dataclass(frozen=True)
class Tensors:
    """Both splits on the training device: images float ``(N, C, H, W)`` in [0, 1], and the
    targets of the network's task (for a reconstruction, the images themselves)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    source: str
    labels: tuple[str, ...]  # one name per class
    target: Target = CLASSES
    normalized: bool = False  # train_x already holds (x - mean) / std (loop.normalize_once)

    @property
    def classes(self) -> int:
        return len(self.labels)


def read_arrays(
    dataset: str, data: str | os.PathLike[str] | None, log: Log, *, scenes: Scenes | None = None
) -> Arrays:
    """Read the dataset the spec names, or the one at ``--data``: IDX dir, image folders, .npz
    (a scenes directory for the scene datasets, drawn as ``scenes`` says without one)."""
    data = Path(data) if data is not None else None
    if dataset in SCENE_DATASETS:
        return _from_scenes(dataset, scenes or Scenes(), data, log)
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


def _from_scenes(dataset: str, settings: Scenes, data: Path | None, log: Log) -> Arrays:
    """Scenes (images and their digits' boxes) or windows cut from them."""
    kind: Literal["scenes", "windows"] = "windows" if dataset == "mnist_windows" else "scenes"
    if data is not None:
        if not data.exists():
            raise DataError(f"{data}: no such file or directory")
        got: SceneArrays = from_directory(data, kind, settings.seed, settings.negatives, log)
    else:
        config = SceneConfig(
            size=settings.size,
            digits=settings.digits,
            scale=settings.scale,
            max_iou=settings.overlap,
            seed=settings.seed,
            switches=settings.switches(),
            families=(settings.background,) if settings.background else TRAINING_FAMILIES,
        )
        request = SceneRequest(kind, config, settings.count, settings.test, settings.negatives)
        got = generated(request, lambda: load_mnist(log=log), log)
    labels = LABELS if kind == "windows" else tuple(str(d) for d in range(10))
    return Arrays(
        got.train_x[:, None], got.train_y, got.test_x[:, None], got.test_y, got.source, labels
    )


def _channels_first(x: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return x[:, None] if x.ndim == 3 else x


def _from_npz(path: Path, log: Log) -> Arrays:
    x, y = load_npz_targets(path)
    cut = len(x) - max(1, len(x) // HOLDOUT)
    if cut < 1:
        raise DataError(f"{path}: {len(x)} samples; need at least 2 (train and test)")
    log(f"reading {path}: training on the first {cut}, testing on the last {len(x) - cut}")
    x = _channels_first(x)
    if y is None:
        return Arrays(x[:cut], None, x[cut:], None, str(path))
    if y.dtype.kind == "f":
        y = _channels_first(y)  # a float map (N, H, W) is one channel
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
    target: Target,
    limit: int | None,
    device: torch.device,
    log: Log,
) -> Tensors:
    """Scale to [0, 1], pad or resize to the input's (H, W), check channels and targets."""
    if len(shape) != 3:
        raise DataError(
            f"the network's input is {fmt_shape(shape)}; training needs images C x H x W"
        )
    channels, height, width = shape
    _check_channels(arrays, channels)
    train_x, train_y = arrays.train_x, arrays.train_y
    if limit is not None and limit < len(train_x):
        log(f"training on the first {limit} of {len(train_x)} samples (--limit)")
        train_x, train_y = train_x[:limit], None if train_y is None else train_y[:limit]
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
    if target.task == "boxes":  # a detector's scenes: their boxes, checked (train/yolo.py)
        boxes = box_targets(arrays.train_y, arrays.test_y, src, size, target, arrays.source)
        x = (_tensor(train_x, size, device), _tensor(arrays.test_x, size, device))
        ys = tuple(torch.as_tensor(b, device=device) for b in (boxes[0][: len(x[0])], boxes[1]))
        return Tensors(x[0], ys[0], x[1], ys[1], arrays.source, arrays.labels, target)
    x = (_tensor(train_x, size, device), _tensor(arrays.test_x, size, device))
    if target.task == "classes":
        n_classes = _check_labels(arrays, target.classes)
        return Tensors(
            x[0],
            torch.as_tensor(train_y, device=device),
            x[1],
            torch.as_tensor(arrays.test_y, device=device),
            arrays.source,
            _labels(arrays.labels, n_classes),
            target,
        )
    target = _map_target(arrays, shape, size, target, log)
    if target.reconstruct:
        return Tensors(x[0], x[0], x[1], x[1], arrays.source, (), target)
    assert train_y is not None and arrays.test_y is not None
    ys = (_target_tensor(train_y, target, device), _target_tensor(arrays.test_y, target, device))
    return Tensors(x[0], ys[0], x[1], ys[1], arrays.source, (), target)


def _map_target(
    arrays: Arrays, shape: Shape, size: tuple[int, int], target: Target, log: Log
) -> Target:
    """The map target, checked against the data: maps (or per-pixel classes) of the output's
    shape, or the inputs themselves when the data has none and the output has their shape."""
    y = arrays.train_y
    out = target.shape
    if not len(arrays.train_x) or not len(arrays.test_x):
        raise DataError(f"{arrays.source}: an empty training or test set")
    if y is None or (y.ndim == 1 and target.task == "map"):
        fitted = (shape[0], *size)
        if target.task == "map" and tuple(out) == fitted:
            had = "" if y is None else " (its labels are not used)"
            log(f"the output is a {fmt_shape(out)} map, as the input: reconstructing it{had}")
            return Target(target.task, target.shape, reconstruct=True)
        what = "maps N x " + fmt_shape(out) if target.task == "map" else "classes N x H x W"
        raise DataError(
            f"{arrays.source} has no targets of the output's shape {fmt_shape(out)}; "
            f"expected an .npz whose y holds {what}"
            + (
                f" (or an output of the input's shape {fmt_shape(fitted)}, to reconstruct it)"
                if target.task == "map"
                else ""
            )
        )
    want = tuple(out) if target.task == "map" else tuple(out[1:])
    integer = y.dtype.kind in "iu"
    if target.task == "segmentation" and not (integer and y.ndim == 3):
        raise DataError(
            f"{arrays.source}: loss cross_entropy on a map needs integer per-pixel classes "
            f"y of shape N x {fmt_shape(want)}; found {y.dtype} {tuple(y.shape)}"
        )
    if target.task == "map" and integer:
        raise DataError(
            f"{arrays.source}: loss mse on a map needs float maps y of shape "
            f"N x {fmt_shape(want)}; found integer {tuple(y.shape)} (per-pixel classes train "
            "with loss cross_entropy)"
        )
    if tuple(y.shape[1:]) != want:
        raise DataError(
            f"{arrays.source}: the targets are {fmt_shape(tuple(y.shape[1:]))} per sample, but "
            f"the network outputs {fmt_shape(out)}; they must match"
        )
    if target.task == "segmentation":
        _check_pixel_classes(arrays, int(out[0]))
    return target


def _check_pixel_classes(arrays: Arrays, classes: int) -> None:
    for y in (arrays.train_y, arrays.test_y):
        if y is not None and y.size and (int(y.min()) < 0 or int(y.max()) >= classes):
            raise DataError(
                f"{arrays.source}: per-pixel classes from {int(y.min())} to {int(y.max())}, but "
                f"the output map has {classes} channels (classes 0 to {classes - 1})"
            )


def _target_tensor(y: npt.NDArray[Any], target: Target, device: torch.device) -> torch.Tensor:
    dtype = torch.int64 if target.task == "segmentation" else torch.float32
    return torch.as_tensor(np.ascontiguousarray(y)).to(device=device, dtype=dtype)


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
    if arrays.train_y is None or arrays.test_y is None or arrays.train_y.ndim != 1:
        raise DataError(
            f"{arrays.source} has no class labels y (N,); the network's output is class scores"
        )
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
