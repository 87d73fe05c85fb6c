"""Domain randomization for scenes (Tremblay et al. 2018): random backgrounds, flying
distractors and photometric changes, each drawn from a numpy Generator so that a scene is
the same every time it is made from the same seed.

Canvases are float32 ``(H, W)`` in [0, 1]; backgrounds stay in [0, BACKGROUND_TOP] and
digits are drawn brighter than that (netspec.data.scenes), so a digit always differs from
what lies under it before contrast, brightness and inversion move both.

Background families: ``noise``, ``gradient``, ``texture``, ``clutter``, ``pink``,
``leaves`` and ``print`` are the ones a randomized training setting draws from; ``cells``
(Voronoi cells with dark borders) is used by no training setting, so that testing on it
measures the "reality gap". ``pink``, ``leaves`` and ``print`` imitate photographs
(natural-image statistics, occlusion) and printed clutter; all are synthesized here from
the Generator alone, never from a bundled photograph, so that photographs stay a fair test.
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
PINK_SLOPE = (-2.4, -1.6)  # the log-log slope of a `pink` background's power spectrum
_GRID = 3  # glyph strokes join points of a 3x3 grid, as letters' strokes do
_SQUARE = np.array([(-1.0, -1.0), (1.0, -1.0), (1.0, 1.0), (-1.0, 1.0)]) / np.sqrt(2)
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


def _unit(x: Canvas) -> Canvas:
    """``x`` rescaled from its own range to [0, 1] (zeros when it is flat)."""
    span = float(x.max() - x.min())
    return ((x - x.min()) / span if span > 0 else np.zeros_like(x)).astype(np.float32)


def _power_law(rng: np.random.Generator, h: int, w: int, slope: float) -> Canvas:
    """Gaussian noise whose power spectrum falls as ``f ** slope``, stretched along a
    random direction (grain, bark); an ``h`` x ``w`` crop of a field twice as large, so
    that it does not wrap around as a Fourier synthesis does. float32 throughout (the
    inverse transform of complex64 is four times faster than of complex128)."""
    big_h, big_w = 2 * h, 2 * w
    fy = np.fft.fftfreq(big_h).astype(np.float32)[:, None]
    fx = np.fft.rfftfreq(big_w).astype(np.float32)[None, :]
    angle, stretch = rng.uniform(0, np.pi), rng.uniform(1.0, 2.0)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    along, across = (c * fx + s * fy) * np.float32(stretch), c * fy - s * fx
    f2 = along * along + across * across
    f2[0, 0] = 1.0
    amplitude = f2 ** np.float32(slope / 4)
    amplitude[0, 0] = 0.0  # no mean: _levels sets it
    spectrum = np.empty(amplitude.shape, np.complex64)
    spectrum.real = rng.standard_normal(amplitude.shape, np.float32) * amplitude
    spectrum.imag = rng.standard_normal(amplitude.shape, np.float32) * amplitude
    field = np.fft.irfft2(spectrum, s=(big_h, big_w))
    y0, x0 = int(rng.integers(0, big_h - h + 1)), int(rng.integers(0, big_w - w + 1))
    return field[y0 : y0 + h, x0 : x0 + w].astype(np.float32)


def pink(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """1/f noise: power falling as ``f ** slope``, the slope drawn from PINK_SLOPE (about
    -2, as in photographs of natural scenes, Field 1987), of random contrast and mean."""
    return _levels(rng, _power_law(rng, h, w, float(rng.uniform(*PINK_SLOPE))))


def leaves(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Dead leaves (Matheron 1968; Lee, Mumford and Huang 2001): discs and boxes whose
    radii follow a power law, each hiding those before it, each with its own grey,
    shading and 1/f grain, then a slight defocus. A synthesized photograph: occluding
    edges at every scale over smooth, grainy surfaces."""
    top = _leaf_map(rng, h, w)
    count = int(top.max()) + 1
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    grey = rng.uniform(0.0, 1.0, count).astype(np.float32)
    shade = rng.normal(0.0, 0.3 / max(h, w), (count, 2)).astype(np.float32)
    grain = rng.uniform(0.0, 0.15, count).astype(np.float32)
    x = grey[top] + shade[top, 0] * xx + shade[top, 1] * yy
    x += grain[top] * _unit(_power_law(rng, h, w, -2.0))
    radius = float(rng.uniform(0.0, 1.0))
    x = np.asarray(_float_image(x).filter(ImageFilter.GaussianBlur(radius)), np.float32)
    return _levels(rng, x)


def _leaf_map(rng: np.random.Generator, h: int, w: int) -> npt.NDArray[np.int64]:
    """Which leaf is on top at each pixel (0: none): ellipses and turned squares, radii
    of density ~ r**-3 between about size/48 and size/2, enough to cover the canvas 1.5
    to 4 times over."""
    r_min, r_max = max(2.0, min(h, w) / 48), min(h, w) / 2
    mean_r2 = 2 * r_min**2 * np.log(r_max / r_min)
    count = int(rng.uniform(1.5, 4.0) * h * w / (np.pi * mean_r2))
    u = rng.random(count)
    r = ((r_min**-2 - u * (r_min**-2 - r_max**-2)) ** -0.5)[:, None]
    centre = rng.uniform(-0.1, 1.1, (count, 2)) * np.array([w, h])
    cx, cy = centre[:, :1], centre[:, 1:]
    ry = r * rng.uniform(0.4, 1.0, (count, 1))
    squares = (rng.random(count) < 0.3).tolist()
    turn = rng.uniform(0, np.pi, (count, 1))
    dx, dy = _SQUARE[:, 0] * r, _SQUARE[:, 1] * r
    c, s = np.cos(turn), np.sin(turn)
    corners = np.stack([cx + c * dx - s * dy, cy + s * dx + c * dy], -1).reshape(count, 8)
    ovals = np.concatenate([cx - r, cy - ry, cx + r, cy + ry], 1)
    image = Image.new("I", (w, h), 0)
    draw = ImageDraw.Draw(image)
    outlines = zip(squares, corners.tolist(), ovals.tolist(), strict=True)
    for leaf, (square, corner, oval) in enumerate(outlines, 1):
        if square:
            draw.polygon(corner, fill=leaf)
        else:
            draw.ellipse(oval, fill=leaf)
    return np.asarray(image, np.int64)


def printed(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Print on paper: rows of glyph-like strokes, ruled lines and printed shapes, ink
    dark on light paper or light on dark, half of the time each, on faintly shaded paper
    and slightly soft (a printed page, a sign or a label in a photograph)."""
    ink = Image.fromarray(np.round(_text(rng, h, w) * 255).astype(np.uint8), "L")
    if rng.random() < 0.5:
        ink = ink.rotate(float(rng.uniform(-20, 20)), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(ink)
    _rules(rng, draw, h, w)
    _marks(rng, draw, h, w)
    ink = ink.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.0, 0.8))))
    paper = 1.0 - rng.uniform(0.0, 0.3) * _unit(_power_law(rng, h, w, -3.0))
    x = paper - rng.uniform(0.5, 1.0) * np.asarray(ink, np.float32) / 255.0
    light_ink = rng.random() < 0.5
    return _levels(rng, (-x if light_ink else x).astype(np.float32))


def _text(rng: np.random.Generator, h: int, w: int) -> Canvas:
    """Rows of glyphs from a random alphabet, with spaces between words, over a block of
    at least 60% of each side: alpha in [0, 1]. Laid out by indexing the alphabet's
    tiles, so a page of any size costs one gather."""
    height = int(rng.integers(5, 19))
    width = max(4, int(height * rng.uniform(0.5, 0.85)))
    pitch = int(height * rng.uniform(1.25, 1.9))  # a row and its leading
    tiles = _alphabet(rng, int(rng.integers(20, 41)), width, height, pitch)
    rows, cols = h // pitch + 2, w // width + 2
    ids = rng.integers(1, len(tiles), (rows, cols))
    ids[rng.random((rows, cols)) < 0.18] = 0  # spaces
    page = tiles[ids].transpose(0, 2, 1, 3).reshape(rows * pitch, cols * width)
    oy, ox = int(rng.integers(0, pitch)), int(rng.integers(0, width))
    page = page[oy : oy + h, ox : ox + w].copy()
    (y0, x0), (y1, x1) = rng.uniform(0, 0.2, 2), rng.uniform(0.8, 1.0, 2)
    block = np.zeros((h, w), bool)
    block[int(y0 * h) : int(y1 * h), int(x0 * w) : int(x1 * w)] = True
    page[~block] = 0.0
    return page


def _alphabet(
    rng: np.random.Generator, count: int, width: int, height: int, pitch: int
) -> npt.NDArray[np.float32]:
    """``count`` glyphs in tiles ``pitch`` high (tile 0 is blank: the space), drawn in a
    ``width - 1`` x ``height`` box: a polyline of 1 to 3 strokes between (jittered) points
    of a grid, as letters are made, or a ring (an "o"); either with a second stroke at
    times (the bar of a "t", the stem of a "d")."""
    tiles = np.zeros((count + 1, pitch, width), np.float32)
    stroke = 1 + int(rng.integers(0, height // 8 + 1))
    top = (pitch - height) // 2
    steps = np.array([(width - 2) / (_GRID - 1), (height - 1) / (_GRID - 1)])
    points = rng.integers(0, _GRID, (count, 6, 2)) * steps + rng.uniform(-0.4, 0.4, (count, 6, 2))
    points[..., 1] += top
    ends = rng.integers(2, 5, count)  # points in the polyline
    ring = rng.random(count) < 0.15
    second = rng.random(count) < 0.4
    for k in range(count):
        tile = Image.new("L", (width, pitch), 0)
        draw = ImageDraw.Draw(tile)
        if ring[k]:
            box = (0.0, top + height / 3, width - 2.0, top + height - 1.0)
            draw.ellipse(box, outline=255, width=stroke)
        else:
            draw.line([(float(x), float(y)) for x, y in points[k, : ends[k]]], 255, stroke)
        if second[k]:
            draw.line([(float(x), float(y)) for x, y in points[k, 4:]], 255, stroke)
        tiles[k + 1] = np.asarray(tile, np.float32) / 255.0
    return tiles


def _rules(rng: np.random.Generator, draw: ImageDraw.ImageDraw, h: int, w: int) -> None:
    """0 to 4 long lines: rules, underlines and edges, mostly level or upright."""
    for _ in range(int(rng.integers(0, 5))):
        x0, y0 = rng.uniform(0, w), rng.uniform(0, h)
        angle = [0.0, np.pi / 2, rng.uniform(0, np.pi)][int(rng.integers(3))]
        length = rng.uniform(0.3, 1.0) * max(h, w)
        end = (x0 + np.cos(angle) * length, y0 + np.sin(angle) * length)
        draw.line([(x0, y0), end], fill=255, width=int(rng.integers(1, 4)))


def _marks(rng: np.random.Generator, draw: ImageDraw.ImageDraw, h: int, w: int) -> None:
    """0 to 5 printed shapes: boxes, frames, discs and rings."""
    for _ in range(int(rng.integers(0, 6))):
        x0, y0 = rng.uniform(-0.1 * w, w), rng.uniform(-0.1 * h, h)
        side = rng.uniform(6, 0.4 * min(h, w))
        box = (x0, y0, x0 + side * rng.uniform(0.5, 2.0), y0 + side)
        filled = rng.random() < 0.3
        shape = draw.rectangle if rng.random() < 0.5 else draw.ellipse
        shape(box, fill=255 if filled else None, outline=255, width=int(rng.integers(1, 4)))


TRAINING_BACKGROUNDS: dict[str, Background] = {
    "noise": noise,
    "gradient": gradient,
    "texture": texture,
    "clutter": clutter,
    "pink": pink,
    "leaves": leaves,
    "print": printed,
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
