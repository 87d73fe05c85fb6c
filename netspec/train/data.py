"""Fit a dataset's arrays (netspec.data.read_arrays) to the network's input, and keep them
on the training device.

Images stay in pixel units scaled to [0, 1] (background 0), so padding and augmentation
fill with background; normalization is applied per batch, after augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from netspec.data import Arrays, DataError
from netspec.ir import Shape
from netspec.tasks import CLASSIFIER, Target
from netspec.tasks.base import Given
from netspec.text import fmt_shape

Log = Callable[[str], None]


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
    target: Target = CLASSIFIER
    normalized: bool = False  # train_x already holds (x - mean) / std (loop.normalize_once)

    @property
    def classes(self) -> int:
        return len(self.labels)


def fit_to_input(
    arrays: Arrays,
    shape: Shape,
    target: Target,
    limit: int | None,
    device: torch.device,
    log: Log,
) -> Tensors:
    """Scale to [0, 1], pad or resize to the input's (H, W), check channels; the target's
    task checks the data's targets and makes them tensors (netspec.tasks)."""
    if len(shape) != 3:
        raise DataError(
            f"the network's input is {fmt_shape(shape)}; training needs images C x H x W"
        )
    channels, height, width = shape
    _check_channels(arrays, channels)
    train_x = arrays.train_x
    if limit is not None and limit < len(train_x):
        log(f"training on the first {limit} of {len(train_x)} samples (--limit)")
        train_x = train_x[:limit]
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
    x = (_tensor(train_x, size, device), _tensor(arrays.test_x, size, device))
    given = Given(
        arrays.train_y,
        arrays.test_y,
        counts=(len(arrays.train_x), len(arrays.test_x)),
        kept=len(train_x),
        source=arrays.source,
        labels=arrays.labels,
        read=src,
        channels=channels,
        size=size,
    )
    fitted = target.task.fit(given, target, x, device, log)
    return Tensors(
        x[0], fitted.train_y, x[1], fitted.test_y, arrays.source, fitted.labels, fitted.target
    )


def _check_channels(arrays: Arrays, channels: int | str) -> None:
    found = arrays.train_x.shape[1]
    if channels != found:
        raise DataError(
            f"the network's input has {channels} channel(s), but the images of "
            f"{arrays.source} have {found}; change the input shape to {found}xHxW"
        )


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
