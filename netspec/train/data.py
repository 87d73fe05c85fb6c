"""Fit a dataset's arrays (netspec.data.read_arrays) to the network's input, and keep them
on the training device; measure and apply the input normalization.

Images stay in pixel units scaled to [0, 1] (background 0), so padding and augmentation
fill with background; normalization is applied per batch, after augmentation. With a
`resize` rule, images are scaled and cut at their centre (netspec.data.sizing); training
images are kept larger when random resized crops cut them to the input each epoch.

The training images of a large image folder are not held (`Streamed`): each batch is
decoded, fitted as held images are and deformed in the loader's threads
(netspec.data.stream), then moved to the device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F

from netspec.data import Arrays, DataError
from netspec.data.sizing import centre, scaled, train_size
from netspec.data.stream import StreamedImages
from netspec.ir import Shape
from netspec.tasks import CLASSIFIER, Target
from netspec.tasks.base import Given
from netspec.text import fmt_shape
from netspec.trainspec import Normalize, TrainConfig

Log = Callable[[str], None]
T = TypeVar("T")


@dataclass(frozen=True)
class Streamed:
    """Training images decoded a batch at a time (netspec.data.stream), each batch fitted
    to ``size`` as held images are (`_tensor`): the same floats, batch by batch."""

    images: StreamedImages
    size: tuple[int, int]  # (H, W) they are kept at: the input's, or larger for crops
    resize: int | None

    def __len__(self) -> int:
        return len(self.images)

    def batches(
        self,
        picks: Sequence[npt.NDArray[np.int64]],
        make: Callable[[int, torch.Tensor, torch.Tensor], T],
        threads: int | None = None,
    ) -> Iterator[T]:
        """``make(step, images, labels)`` of each step's images, floats ``(B, C, H, W)`` in
        [0, 1] on the CPU and int64 labels, run in the loader's threads, in step order."""

        def fitted(step: int, x: npt.NDArray[np.uint8], y: npt.NDArray[np.int64]) -> T:
            cpu = torch.device("cpu")
            return make(step, _tensor(x, self.size, cpu, self.resize), torch.from_numpy(y))

        return self.images.batches(picks, fitted, threads)


@dataclass(frozen=True)
class Tensors:
    """Both splits on the training device: images float ``(N, C, H, W)`` in [0, 1], and the
    targets of the network's task (for a reconstruction, the images themselves); the
    training images of a large image folder `Streamed` instead."""

    train_x: torch.Tensor | Streamed
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

    @property
    def size(self) -> tuple[int, int]:
        """The network's input's (H, W), the test images' (training images may be larger:
        random resized crops cut them to it)."""
        return int(self.test_x.shape[2]), int(self.test_x.shape[3])


@dataclass(frozen=True)
class Sizing:
    """How images are brought to the input: the train section's `resize N` (None: padded
    when they fit evenly, else resized), and whether training cuts random resized crops
    (then training images are kept at `netspec.data.sizing.train_size`)."""

    resize: int | None = None
    crops: bool = False


def fit_to_input(
    arrays: Arrays,
    shape: Shape,
    target: Target,
    limit: int | None,
    device: torch.device,
    log: Log,
    sizing: Sizing | None = None,
) -> Tensors:
    """Scale to [0, 1], bring to the input's (H, W) as ``sizing`` says, check channels; the
    target's task checks the data's targets and makes them tensors (netspec.tasks)."""
    if len(shape) != 3:
        raise DataError(
            f"the network's input is {fmt_shape(shape)}; training needs images C x H x W"
        )
    channels, height, width = shape
    _check_channels(arrays, channels)
    train_x = arrays.train_x
    if limit is not None and limit < len(train_x):
        log(f"training on the first {limit} of {len(train_x)} samples (--limit)")
        train_x = train_x.first(limit) if isinstance(train_x, StreamedImages) else train_x[:limit]
    size = (
        height if isinstance(height, int) else arrays.train_x.shape[2],
        width if isinstance(width, int) else arrays.train_x.shape[3],
    )
    src = (int(arrays.train_x.shape[2]), int(arrays.train_x.shape[3]))
    sizing = sizing or Sizing()
    if sizing.resize is not None and not target.task.per_sample:
        raise DataError(
            f"`resize` cuts the centre of each image, and the targets of a {target.task.name} "
            "output would not move with it; bring the images to the input's size beforehand"
        )
    kept = train_size(size, sizing.resize, sizing.crops)
    tested = (int(arrays.test_x.shape[2]), int(arrays.test_x.shape[3]))
    if tested != size and sizing.resize is not None:
        log(
            f"fitting images of {tested[0]}x{tested[1]}: the shorter side scaled to "
            f"{sizing.resize}, the centre {size[0]}x{size[1]} kept"
        )
    elif src != size and sizing.resize is None:
        log(
            f"fitting images of {src[0]}x{src[1]} to the input's {size[0]}x{size[1]} "
            f"({'padding' if _pads(src, size) else 'resizing'})"
        )
    if kept != size:
        log(f"training images kept at {kept[0]}x{kept[1]}: random resized crops cut them")
    test_x = _tensor(arrays.test_x, size, device, sizing.resize)
    if isinstance(train_x, StreamedImages):
        if not target.task.per_sample or target.reconstruct:
            raise DataError(
                f"{arrays.source}: its training images are streamed, which only a network "
                f"trained on per-sample labels can take, not a {target.task.name} output"
            )
        held = torch.empty((0, train_x.shape[1], *kept), device=device)  # a fit ignores it
        streamed = Streamed(train_x, kept, sizing.resize)
        x = (held, test_x)
    else:
        x = (_tensor(train_x, kept, device, sizing.resize), test_x)
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
    train = streamed if isinstance(train_x, StreamedImages) else x[0]
    return Tensors(
        train, fitted.train_y, x[1], fitted.test_y, arrays.source, fitted.labels, fitted.target
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


def _tensor(
    x: npt.NDArray[Any], size: tuple[int, int], device: torch.device, resize: int | None
) -> torch.Tensor:
    """Float images in [0, 1] at ``size``: scaled by the `resize` rule and cut at the
    centre; without one, centred with background padding, else resized."""
    t = torch.as_tensor(np.ascontiguousarray(x))
    t = t.float().div(255) if t.dtype == torch.uint8 else t.float()
    src = (t.shape[2], t.shape[3])
    if src != size and resize is not None:
        to = scaled(src, resize, size)
        if to != src:
            t = F.interpolate(t, size=to, mode="bilinear", antialias=True, align_corners=False)
        top, left = centre(to, size)
        t = t[:, :, top : top + size[0], left : left + size[1]]
    elif src != size:
        if _pads(src, size):
            dh, dw = (size[0] - src[0]) // 2, (size[1] - src[1]) // 2
            t = F.pad(t, (dw, dw, dh, dh))
        else:
            t = F.interpolate(t, size=size, mode="bilinear", antialias=True, align_corners=False)
    return t.contiguous().to(device)


MEASURE_VALUES = 1 << 24  # values a measure pass holds in float64 at once (128 MiB)


def measure(x: torch.Tensor | Streamed) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Each channel's mean and standard deviation over images ``(N, C, H, W)`` in [0, 1]
    (`normalize auto`), summed in float64 a batch at a time, as the numbers a run records;
    streamed images decoded in the same batches (one pass of the loader)."""
    shape = x.shape if isinstance(x, torch.Tensor) else x.images.shape
    step = max(1, MEASURE_VALUES // max(math.prod(shape[1:]), 1))
    starts = range(0, len(x), step)
    if isinstance(x, torch.Tensor):
        batches: Iterator[torch.Tensor] = (x[i : i + step] for i in starts)
    else:
        picks = [np.arange(i, min(i + step, len(x)), dtype=np.int64) for i in starts]
        batches = x.batches(picks, lambda _, pixels, labels: pixels)
    total = torch.zeros(shape[1], dtype=torch.float64)
    squares = torch.zeros_like(total)
    count = 0
    for found in batches:
        batch = found.double()
        total = total.to(batch.device) + batch.sum((0, 2, 3))
        squares = squares.to(batch.device) + batch.square().sum((0, 2, 3))
        count += len(batch) * batch.shape[2] * batch.shape[3]
    mean = total / max(count, 1)
    var = (squares / max(count, 1) - mean.square()).clamp(min=0)
    if bool((var <= 0).any()):
        raise DataError(
            "normalize auto: a channel of the training images holds one value everywhere, "
            "so its std is 0; give the normalization with mean= and std="
        )
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())


def measured(config: TrainConfig, x: torch.Tensor | Streamed, log: Log) -> TrainConfig:
    """``config`` with `normalize auto` resolved: the mean and std of each channel of the
    training images ``x`` (recorded in the run, which every later use reads them from)."""
    mean, std = measure(x)
    log(
        "normalize auto: the training images' mean "
        + ",".join(f"{m:.4f}" for m in mean)
        + " std "
        + ",".join(f"{s:.4f}" for s in std)
    )
    one = len(mean) == 1  # a grey input's: numbers, as a section writes them
    normalize = Normalize(mean=mean[0] if one else mean, std=std[0] if one else std, auto=True)
    return config.model_copy(update={"normalize": normalize})


def normalized(x: torch.Tensor, norm: Normalize) -> torch.Tensor:
    """``(x - mean) / std`` for images ``(B, C, H, W)``, per channel where ``norm`` gives a
    value per channel."""

    def spread(v: float | tuple[float, ...]) -> float | torch.Tensor:
        if not isinstance(v, tuple):
            return v
        if len(v) == 1:
            return v[0]
        return torch.tensor(v, dtype=x.dtype, device=x.device).view(-1, 1, 1)

    return (x - spread(norm.mean)) / spread(norm.std)
