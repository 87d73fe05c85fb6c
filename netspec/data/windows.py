"""28x28 windows cut from scenes, for a classifier that a sliding window (or its fully
convolutional form) runs over a scene: a window centred on a digit, at the digit's scale,
is that digit's class; a window with no digit centred at its scale is ``background``.

A digit's window is the square its 28x28 MNIST frame would fill: MNIST centres a digit's
ink in 20 of the frame's 28 pixels, so the side is the ink box's larger side x 28/20.
Digit windows are jittered a little (a shift of up to ``SHIFT`` of the side, a scale of
up to 2^``ZOOM`` either way), as the positions and pyramid levels a detector tries will
be; background windows are random squares at the digits' scales, half of them near
misses (a digit off-centre, or centred but far too large or small a window), so that the
classifier learns where and how large, not only what.

>>> round(digit_side(np.array([10.0, 10.0, 20.0, 30.0])), 2)
28.0
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt
from PIL import Image

from netspec.data.record import WINDOW_LABELS
from netspec.data.scenes import Scene

__all__ = ["BACKGROUND", "LABELS", "WINDOW", "cut", "digit_side", "scene_windows", "windows"]

WINDOW = 28
INK_SHARE = 20 / 28  # of an MNIST frame's side, its digit's ink
BACKGROUND = 10  # the class of a window with no digit centred
LABELS = WINDOW_LABELS  # the ten digits and "background"
SHIFT = 0.08  # a digit window's centre moves by at most this share of its side
ZOOM = 0.25  # ... and its side by a factor of at most 2**ZOOM either way
NEAR = 0.3  # a background window has no digit within this share of its side of its centre
FAR_SCALE = 1.8  # ... unless the window is this many times too large or too small for it
TRIES = 10

Box = npt.NDArray[np.float32]


def digit_side(box: Box) -> float:
    """The side of the window a digit's box (x1, y1, x2, y2) fills as MNIST frames it."""
    return float(max(box[2] - box[0], box[3] - box[1])) / INK_SHARE


def cut(image: npt.NDArray[np.uint8], cx: float, cy: float, side: float) -> npt.NDArray[np.uint8]:
    """The square of ``side`` pixels centred at (cx, cy), resized to WINDOW x WINDOW;
    what lies off the image is black (as a zero-padded convolution sees it)."""
    h, w = image.shape
    outside = max(0.0, -cx, -cy, cx - w, cy - h)  # how far the centre lies off the image
    pad = int(np.ceil(side + outside)) + 1
    padded = Image.fromarray(np.pad(image, pad), "L")
    half = side / 2
    box = (cx - half + pad, cy - half + pad, cx + half + pad, cy + half + pad)
    window = padded.resize((WINDOW, WINDOW), Image.Resampling.BILINEAR, box=box)
    return np.asarray(window, np.uint8)


def _centred(scene: Scene, cx: float, cy: float, side: float) -> bool:
    """Whether a digit sits at the centre of this window at about its scale."""
    for box in scene.boxes:
        dx, dy = abs((box[0] + box[2]) / 2 - cx), abs((box[1] + box[3]) / 2 - cy)
        ratio = side / digit_side(box)
        if max(dx, dy) < NEAR * side and 1 / FAR_SCALE < ratio < FAR_SCALE:
            return True
    return False


def _negative(
    rng: np.random.Generator, scene: Scene, scale: tuple[int, int]
) -> tuple[float, float, float] | None:
    """A background window's (cx, cy, side), or None if TRIES draws all held a digit."""
    h, w = scene.image.shape
    for _ in range(TRIES):
        if len(scene.boxes) and rng.random() < 0.5:  # a near miss of one digit
            box = scene.boxes[int(rng.integers(len(scene.boxes)))]
            side = digit_side(box)
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            if rng.random() < 0.5:
                angle, reach = rng.uniform(0, 2 * np.pi), rng.uniform(NEAR + 0.05, 0.8)
                cx, cy = cx + np.cos(angle) * reach * side, cy + np.sin(angle) * reach * side
            else:
                side *= FAR_SCALE ** float(rng.choice([-1.0, 1.0]) * rng.uniform(1.05, 1.6))
        else:
            side = float(rng.uniform(*scale))
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        cx, cy = float(np.clip(cx, 0, w)), float(np.clip(cy, 0, h))
        if not _centred(scene, cx, cy, side):
            return cx, cy, side
    return None


def scene_windows(
    scene: Scene, rng: np.random.Generator, negatives: float, scale: tuple[int, int]
) -> tuple[list[npt.NDArray[np.uint8]], list[int]]:
    """Each digit's jittered window and about ``negatives`` background windows per digit
    (at least one a scene), with their classes."""
    crops, classes = [], []
    for box, c in zip(scene.boxes, scene.classes.tolist(), strict=True):
        side = digit_side(box) * 2 ** float(rng.uniform(-ZOOM, ZOOM))
        cx = (box[0] + box[2]) / 2 + rng.uniform(-SHIFT, SHIFT) * side
        cy = (box[1] + box[3]) / 2 + rng.uniform(-SHIFT, SHIFT) * side
        crops.append(cut(scene.image, float(cx), float(cy), side))
        classes.append(int(c))
    wanted = max(1, int(rng.poisson(negatives * len(scene.boxes))) if len(scene.boxes) else 1)
    for _ in range(wanted):
        found = _negative(rng, scene, scale)
        if found is not None:
            crops.append(cut(scene.image, *found))
            classes.append(BACKGROUND)
    return crops, classes


def windows(
    scenes: Iterable[Scene], seed: int, negatives: float = 1.0, scale: tuple[int, int] = (14, 56)
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """The windows of every scene ``(N, 28, 28)`` and their classes ``(N,)`` (0..9 digits,
    BACKGROUND); scene i's windows come from a Generator seeded by (seed, i) alone."""
    crops: list[npt.NDArray[np.uint8]] = []
    classes: list[int] = []
    for i, scene in enumerate(scenes):
        more, labels = scene_windows(scene, np.random.default_rng([seed, i, 1]), negatives, scale)
        crops.extend(more)
        classes.extend(labels)
    x = np.stack(crops) if crops else np.zeros((0, WINDOW, WINDOW), np.uint8)
    return x, np.asarray(classes, np.int64)
