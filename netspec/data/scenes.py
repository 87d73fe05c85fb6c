"""Synthetic detection scenes: MNIST digits scattered on a canvas, each with its tight box
and class, with domain randomization switchable piece by piece.

The API other modules build on (stable):

- ``SceneConfig(size=128, digits=(1, 5), scale=(14, 56), max_iou=0.1, split="train",
  seed=0, switches=(), families=TRAINING_FAMILIES)``: what to draw. ``switches`` is a
  subset of ``SWITCHES`` ("backgrounds", "distractors", "contrast", "brightness",
  "invert", "blur"); ``families`` are the background families drawn from when
  "backgrounds" is on (``FAMILIES``; ``HELD_OUT`` = "cells" is in no training setting).
  ``SceneConfig.plain()`` (black ground, nothing else) and ``SceneConfig.randomized()``
  (every switch) are the two usual settings. ``scale`` is the side, in pixels, that a
  digit's 28x28 MNIST frame is scaled to (its ink is about 20/28 of that).
- ``DigitPool.of(mnist, split)``: the digits a split draws from (MNIST's training images
  for train scenes, its test images for test scenes: no digit is in both).
- ``make_scene(config, pool, index) -> Scene`` and ``make_scenes(config, pool, count)``:
  scene ``index`` comes from a Generator seeded with (seed, split, index) alone, so it is
  the same byte for byte whatever ``count`` is and whichever scenes are made before it.
- ``Scene(image, boxes, classes, sources)``: ``image`` uint8 ``(H, W)``; ``boxes`` float32
  ``(N, 4)`` as x1, y1, x2, y2 in pixels, the edges of the pixels the digit's ink covers
  (a pixel x is inside when x1 <= x < x2; ink is alpha >= ``INK``, before any blur);
  ``classes`` int64 ``(N,)`` in 0..9; ``sources`` int64 ``(N,)``: each digit's index in
  its MNIST split (-1 for scenes read from files).

Files (netspec.data.scenefiles): ``write_scenes(dir, scenes, config)`` and
``read_scenes(dir)``; windows for a classifier: netspec.data.windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from PIL import Image

from netspec.data import randomize as dr
from netspec.data.mnist import MnistData
from netspec.data.registry import SCENE_SWITCHES
from netspec.errors import UsageError

__all__ = [
    "FAMILIES",
    "HELD_OUT",
    "INK",
    "SWITCHES",
    "TRAINING_FAMILIES",
    "DigitPool",
    "Scene",
    "SceneConfig",
    "make_scene",
    "make_scenes",
]

Split = Literal["train", "test"]
SWITCHES = SCENE_SWITCHES
TRAINING_FAMILIES = tuple(dr.TRAINING_BACKGROUNDS)
HELD_OUT = dr.HELD_OUT
FAMILIES = tuple(dr.BACKGROUNDS)
INK = 0.25  # a digit's pixel is ink where its scaled MNIST value is at least this
CONTAINED = 0.3  # no digit may have more than this share of its box under another's
MAX_DISTRACTORS = 6
PLACE_TRIES = 30
MAX_SIZE = 2048
_SPLIT_CODE = {"train": 0, "test": 1}


@dataclass(frozen=True)
class SceneConfig:
    """What a set of scenes holds and how it is randomized; checked when made."""

    size: int = 128
    digits: tuple[int, int] = (1, 5)
    scale: tuple[int, int] = (14, 56)
    max_iou: float = 0.1
    split: Split = "train"
    seed: int = 0
    switches: tuple[str, ...] = ()
    families: tuple[str, ...] = TRAINING_FAMILIES

    def __post_init__(self) -> None:
        _check(16 <= self.size <= MAX_SIZE, f"size {self.size}: expected 16 to {MAX_SIZE}")
        lo, hi = self.digits
        _check(1 <= lo <= hi <= 64, f"digits {lo}..{hi}: expected 1 <= low <= high <= 64")
        small, big = self.scale
        _check(
            8 <= small <= big <= self.size,
            f"scale {small}..{big}: expected 8 <= low <= high <= the size ({self.size})",
        )
        _check(0.0 <= self.max_iou < 1.0, f"max_iou {self.max_iou}: expected 0 <= it < 1")
        _check(self.split in _SPLIT_CODE, f"split {self.split}: expected train or test")
        _check(self.seed >= 0, f"seed {self.seed}: expected a number >= 0")
        for s in self.switches:
            _check(s in SWITCHES, f"randomize {s}: expected some of {', '.join(SWITCHES)}")
        _check(bool(self.families), "no background family given")
        for f in self.families:
            _check(f in FAMILIES, f"background {f}: expected one of {', '.join(FAMILIES)}")

    @classmethod
    def plain(cls, **settings: Any) -> SceneConfig:
        """Black ground, white digits, no distractors, no photometric change."""
        return cls(**settings)

    @classmethod
    def randomized(cls, **settings: Any) -> SceneConfig:
        """Every switch on, backgrounds from the training families unless told otherwise."""
        return cls(switches=SWITCHES, **settings)

    def on(self, switch: str) -> bool:
        return switch in self.switches

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON-ready values (for scenes.json and cache keys)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise UsageError(message)


@dataclass(frozen=True, eq=False)
class Scene:
    """One canvas, its digits' boxes (x1, y1, x2, y2 in pixels) and classes."""

    image: npt.NDArray[np.uint8]
    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]
    sources: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass(frozen=True, eq=False)
class DigitPool:
    """The MNIST digits a split draws from: images uint8 ``(N, 28, 28)``, labels int64."""

    images: npt.NDArray[np.uint8]
    labels: npt.NDArray[np.int64]

    @classmethod
    def of(cls, mnist: MnistData, split: Split) -> DigitPool:
        if split == "train":
            return cls(mnist.train_x, mnist.train_y.astype(np.int64))
        return cls(mnist.test_x, mnist.test_y.astype(np.int64))


def scene_rng(config: SceneConfig, index: int, stream: int = 0) -> np.random.Generator:
    """The Generator of scene ``index``: seeded by (seed, split, index, stream) only."""
    return np.random.default_rng([config.seed, _SPLIT_CODE[config.split], index, stream])


def make_scenes(config: SceneConfig, pool: DigitPool, count: int) -> Iterator[Scene]:
    """Scenes 0 .. count-1."""
    for index in range(count):
        yield make_scene(config, pool, index)


def make_scene(config: SceneConfig, pool: DigitPool, index: int) -> Scene:
    """Scene ``index``: background, distractors, digits, then photometric changes."""
    if not len(pool.images):
        raise UsageError("no MNIST digits to draw scenes from")
    rng = scene_rng(config, index)
    size = config.size
    if config.on("backgrounds"):
        family = config.families[int(rng.integers(len(config.families)))]
        canvas = dr.BACKGROUNDS[family](rng, size, size)
    else:
        canvas = np.zeros((size, size), np.float32)
    if config.on("distractors"):
        _distract(rng, canvas, config, pool)
    boxes, classes, sources = _place_digits(rng, canvas, config, pool)
    for name, change in (
        ("contrast", dr.contrast),
        ("brightness", dr.brightness),
        ("invert", dr.invert),
    ):
        if config.on(name):
            canvas = change(rng, canvas)
    image = Image.fromarray(np.round(np.clip(canvas, 0, 1) * 255).astype(np.uint8), "L")
    if config.on("blur"):
        image = dr.blur(rng, image)
    return Scene(
        np.asarray(image, np.uint8).copy(),
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(classes, np.int64),
        np.asarray(sources, np.int64),
    )


def digit_alpha(image: npt.NDArray[np.uint8], side: int) -> npt.NDArray[np.float32]:
    """An MNIST digit scaled to ``side`` x ``side``, as alpha in [0, 1]."""
    scaled = Image.fromarray(image, "L").resize((side, side), Image.Resampling.BILINEAR)
    return np.asarray(scaled, np.float32) / 255.0


def _ink_box(alpha: npt.NDArray[np.float32]) -> tuple[int, int, int, int] | None:
    """(x1, y1, x2, y2) of the ink in ``alpha`` (exclusive ends), or None if it has none."""
    rows, cols = np.nonzero(alpha >= INK)
    if not len(rows):
        return None
    return int(cols.min()), int(rows.min()), int(cols.max()) + 1, int(rows.max()) + 1


def _fits(
    box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]], cap: float
) -> bool:
    """Whether ``box`` overlaps every placed box by at most the IoU cap, and neither holds
    more than CONTAINED of the other."""
    area = (box[2] - box[0]) * (box[3] - box[1])
    for other in placed:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        other_area = (other[2] - other[0]) * (other[3] - other[1])
        if inter / (area + other_area - inter) > cap or inter > CONTAINED * min(area, other_area):
            return False
    return True


def _place_digits(
    rng: np.random.Generator, canvas: dr.Canvas, config: SceneConfig, pool: DigitPool
) -> tuple[list[tuple[int, int, int, int]], list[int], list[int]]:
    """Draw 1..K digits where they overlap little; the boxes, classes and pool indices."""
    size = config.size
    varied = config.on("backgrounds") or any(config.on(p) for p in dr.PHOTOMETRIC)
    boxes: list[tuple[int, int, int, int]] = []
    classes: list[int] = []
    sources: list[int] = []
    for _ in range(int(rng.integers(config.digits[0], config.digits[1] + 1))):
        k = int(rng.integers(len(pool.images)))
        side = int(rng.integers(config.scale[0], config.scale[1] + 1))
        grey = float(rng.uniform(0.75, 1.0)) if varied else 1.0
        alpha = digit_alpha(pool.images[k], side)
        ink = _ink_box(alpha)
        if ink is None:
            continue
        for _ in range(PLACE_TRIES):
            x = int(rng.integers(-ink[0], size - ink[2] + 1))
            y = int(rng.integers(-ink[1], size - ink[3] + 1))
            box = (x + ink[0], y + ink[1], x + ink[2], y + ink[3])
            if _fits(box, boxes, config.max_iou):
                _composite(canvas, alpha, x, y, grey)
                boxes.append(box)
                classes.append(int(pool.labels[k]))
                sources.append(k)
                break
    return boxes, classes, sources


def _composite(
    canvas: dr.Canvas, alpha: npt.NDArray[np.float32], x: int, y: int, grey: float
) -> None:
    """Lay ``alpha`` (its top left at x, y; parts off the canvas cut) over the canvas."""
    h, w = canvas.shape
    side_y, side_x = alpha.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + side_x, w), min(y + side_y, h)
    if x0 >= x1 or y0 >= y1:
        return
    a = alpha[y0 - y : y1 - y, x0 - x : x1 - x]
    region = canvas[y0:y1, x0:x1]
    region *= 1.0 - a
    region += a * grey


def _fragment(
    rng: np.random.Generator, canvas: dr.Canvas, config: SceneConfig, pool: DigitPool
) -> None:
    """A band of a random digit (25-40% of its frame, from one side), not labelled."""
    k = int(rng.integers(len(pool.images)))
    side = int(rng.integers(config.scale[0], config.scale[1] + 1))
    alpha = digit_alpha(pool.images[k], side).copy()
    keep = max(1, int(side * rng.uniform(0.25, 0.4)))
    edge = int(rng.integers(4))
    mask = np.zeros_like(alpha)
    if edge == 0:
        mask[:keep] = 1
    elif edge == 1:
        mask[-keep:] = 1
    elif edge == 2:
        mask[:, :keep] = 1
    else:
        mask[:, -keep:] = 1
    x = int(rng.integers(-side // 2, config.size - side // 2))
    y = int(rng.integers(-side // 2, config.size - side // 2))
    _composite(canvas, alpha * mask, x, y, float(rng.uniform(0.5, 1.0)))


def _distract(
    rng: np.random.Generator, canvas: dr.Canvas, config: SceneConfig, pool: DigitPool
) -> None:
    """0..MAX_DISTRACTORS strokes, shapes and digit fragments, under the digits."""
    for _ in range(int(rng.integers(0, MAX_DISTRACTORS + 1))):
        kind = dr.DISTRACTORS[int(rng.integers(len(dr.DISTRACTORS)))]
        if kind == "strokes":
            dr.strokes(rng, canvas)
        elif kind == "shapes":
            dr.shapes(rng, canvas)
        else:
            _fragment(rng, canvas, config, pool)
