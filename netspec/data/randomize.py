"""Domain randomization for scenes (Tremblay et al. 2018): random backgrounds, flying
distractors and photometric changes, each drawn from a numpy Generator so that a scene is
the same every time it is made from the same seed.

Canvases are float32 ``(H, W)`` in [0, 1]; backgrounds stay in [0, BACKGROUND_TOP] and
digits are drawn brighter than that (netspec.data.scenes), so a digit always differs from
what lies under it before contrast, brightness and inversion move both.

Background families: ``noise``, ``gradient``, ``texture`` and ``clutter`` are the ones a
randomized training setting draws from; ``cells`` (Voronoi cells with dark borders) is
used by no training setting, so that testing on it measures the "reality gap".
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFilter

from netspec.data.registry import FAMILIES

Canvas = npt.NDArray[np.float32]
Background = Callable[[np.random.Generator, int, int], Canvas]

BACKGROUND_TOP = 0.55  # backgrounds never brighter than this; digits are brighter
DISTRACTORS = ("strokes", "shapes", "fragments")
PHOTOMETRIC = ("contrast", "brightness", "invert", "blur")


def _levels(rng: np.random.Generator, x: Canvas) -> Canvas:
    """``x`` rescaled from its own range into a random sub-range of [0, BACKGROUND_TOP]."""
    low = rng.uniform(0.0, BACKGROUND_TOP * 0.6)
    high = rng.uniform(low + 0.1, BACKGROUND_TOP)
    span = float(x.max() - x.min())
    unit = (x - x.min()) / span if span > 0 else np.zeros_like(x)
    return (low + unit * (high - low)).astype(np.float32)


def noise(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Gaussian noise, sometimes smoothed into blobs."""
    x = rng.normal(0.0, 1.0, (h, w)).astype(np.float32)
    if rng.random() < 0.5:
        radius = float(rng.uniform(1.0, 4.0))
        x = np.asarray(_float_image(x).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    return _levels(rng, x)


def gradient(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """A linear ramp in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return _levels(rng, (np.cos(angle) * xx + np.sin(angle) * yy).astype(np.float32))


def texture(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """A sum of two or three oriented gratings of random period and phase."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x = np.zeros((h, w), np.float32)
    for _ in range(int(rng.integers(2, 4))):
        angle, period = rng.uniform(0, np.pi), rng.uniform(4.0, 32.0)
        phase = rng.uniform(0, 2 * np.pi)
        x += np.sin(2 * np.pi * (np.cos(angle) * xx + np.sin(angle) * yy) / period + phase)
    return _levels(rng, x)


def clutter(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Many overlapping filled rectangles and ellipses of random grey."""
    image = Image.new("L", (w, h), int(rng.integers(0, 256)))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(15, 40))):
        x0, y0 = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        x1, y1 = x0 + rng.uniform(4, 0.4 * w), y0 + rng.uniform(4, 0.4 * h)
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape((x0, y0, x1, y1), fill=int(rng.integers(0, 256)))
    return _levels(rng, np.asarray(image, np.float32))


def cells(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Voronoi cells of random grey with dark borders (the held-out family)."""
    n = int(rng.integers(8, 24))
    seeds = rng.uniform(0, 1, (n, 2)) * np.array([h, w])
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (yy[..., None] - seeds[:, 0]) ** 2 + (xx[..., None] - seeds[:, 1]) ** 2
    order = np.sort(d, axis=-1)
    grey = rng.uniform(0.3, 1.0, n).astype(np.float32)[np.argmin(d, axis=-1)]
    border = np.sqrt(order[..., 1]) - np.sqrt(order[..., 0]) < 1.5
    return _levels(rng, np.where(border, 0.0, grey).astype(np.float32))


TRAINING_BACKGROUNDS: dict[str, Background] = {
    "noise": noise,
    "gradient": gradient,
    "texture": texture,
    "clutter": clutter,
}
HELD_OUT = "cells"
BACKGROUNDS: dict[str, Background] = {**TRAINING_BACKGROUNDS, HELD_OUT: cells}
assert tuple(BACKGROUNDS) == FAMILIES, "netspec.data.registry names the same families"


def _float_image(x: Canvas) -> Image.Image:
    """An 8-bit greyscale image of ``x`` rescaled to 0..255 (Pillow blurs only 8-bit)."""
    span = float(x.max() - x.min()) or 1.0
    return Image.fromarray(np.round((x - x.min()) / span * 255).astype(np.uint8), "L")


def paint(canvas: Canvas, mask: Image.Image, grey: float) -> None:
    """Paint ``grey`` over ``canvas`` where the 8-bit ``mask`` is set (its alpha)."""
    alpha = np.asarray(mask, np.float32) / 255.0
    canvas *= 1.0 - alpha
    canvas += alpha * grey


def strokes(rng: np.random.Generator, canvas: Canvas) -> None:
    """A random polyline, one to three pixels wide."""
    h, w = canvas.shape
    mask = Image.new("L", (w, h), 0)
    points = [(rng.uniform(0, w), rng.uniform(0, h))]
    for _ in range(int(rng.integers(1, 4))):
        x, y = points[-1]
        points.append((x + rng.uniform(-0.3, 0.3) * w, y + rng.uniform(-0.3, 0.3) * h))
    ImageDraw.Draw(mask).line(points, fill=255, width=int(rng.integers(1, 4)))
    paint(canvas, mask, float(rng.uniform(0.3, 1.0)))


def shapes(rng: np.random.Generator, canvas: Canvas) -> None:
    """A small rectangle, ellipse or triangle, filled or outlined."""
    h, w = canvas.shape
    mask = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
    x1, y1 = x0 + rng.uniform(4, 24), y0 + rng.uniform(4, 24)
    filled = rng.random() < 0.5
    fill, outline = (255, None) if filled else (None, 255)
    kind = int(rng.integers(0, 3))
    if kind == 0:
        draw.rectangle((x0, y0, x1, y1), fill=fill, outline=outline, width=2)
    elif kind == 1:
        draw.ellipse((x0, y0, x1, y1), fill=fill, outline=outline, width=2)
    else:
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=fill, outline=outline)
    paint(canvas, mask, float(rng.uniform(0.3, 1.0)))


def contrast(rng: np.random.Generator, canvas: Canvas) -> Canvas:
    """Stretch or flatten around the mean, by a factor in 0.5..1.5."""
    mean = float(canvas.mean())
    return (canvas - mean) * np.float32(rng.uniform(0.5, 1.5)) + np.float32(mean)


def brightness(rng: np.random.Generator, canvas: Canvas) -> Canvas:
    """Shift every pixel by the same amount in -0.25..0.25."""
    return canvas + np.float32(rng.uniform(-0.25, 0.25))


def invert(rng: np.random.Generator, canvas: Canvas) -> Canvas:
    """Dark digits on a light ground, half of the time."""
    return 1.0 - canvas if rng.random() < 0.5 else canvas


def blur(rng: np.random.Generator, image: Image.Image) -> Image.Image:
    """A Gaussian blur of radius 0..1.5 pixels (the finished 8-bit image)."""
    return image.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 1.5))))
