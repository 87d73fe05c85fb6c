"""Boxes drawn on pictures: the one painter, and the one palette, of every picture netspec
draws boxes on: `netspec detect`'s images, a detector's detections.png (netspec.detection.plots)
and a scenes directory's preview.png (netspec.data.scenefiles).

A box is outlined along its pixel edges (x1, y1 to x2 - 1, y2 - 1 of the picture, the box
times the zoom) and labelled above its top-left corner, inside the picture: in the box's
colour on the picture itself, where the picture is a scene seen through its labels
(detections.png, preview.png), or, with `tags`, on a tag of the box's colour, black or white
whichever reads on it, as on `netspec detect`'s images of any kind. Pillow only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

__all__ = ["PALETTE", "Colour", "class_colour", "paint_boxes", "picture_of"]

Colour = tuple[int, int, int]

# One colour per class (RGB), distinct on black and on grey, the scenes' backgrounds.
PALETTE: tuple[Colour, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)
LIGHT = 150  # a tag's colour this light (luma, 0..255) or lighter takes black text
PLAIN_TEXT_ABOVE = 11  # pixels between a plain label's top and its box's top edge


def class_colour(cls: int) -> Colour:
    """The colour of class `cls`'s boxes."""
    return PALETTE[cls % len(PALETTE)]


def picture_of(pixels: npt.NDArray[np.uint8], zoom: int = 1) -> Image.Image:
    """An RGB picture of 8-bit `pixels` (H, W) or (H, W, 3), `zoom` times larger (each
    pixel a zoom x zoom square)."""
    picture = Image.fromarray(np.ascontiguousarray(pixels)).convert("RGB")
    if zoom == 1:
        return picture
    return picture.resize((picture.width * zoom, picture.height * zoom), Image.Resampling.NEAREST)


def paint_boxes(
    picture: Image.Image,
    boxes: npt.NDArray[np.float32],
    texts: Sequence[str],
    colours: Sequence[Colour],
    *,
    zoom: int = 1,
    widths: Sequence[int] | int = 1,
    tags: bool = False,
) -> Image.Image:
    """`picture` with each of `boxes` (xyxy, in the pixels `picture_of` was given) outlined
    `widths` pixels wide in its colour and labelled with its text (the module's doc); in
    order, so a later box is drawn over an earlier one. Returns `picture`, drawn on."""
    pen = ImageDraw.Draw(picture)
    thick = [widths] * len(texts) if isinstance(widths, int) else list(widths)
    for box, text, colour, width in zip(boxes.tolist(), texts, colours, thick, strict=True):
        x1, y1, x2, y2 = (float(v) * zoom for v in box)
        pen.rectangle((x1, y1, max(x1, x2 - 1), max(y1, y2 - 1)), outline=colour, width=width)
        if tags:
            _tag(pen, x1, y1, text, colour)
        else:
            pen.text((x1 + 2, max(y1 - PLAIN_TEXT_ABOVE, 0)), text, fill=colour)
    return picture


def _tag(pen: ImageDraw.ImageDraw, x: float, y: float, text: str, colour: Colour) -> None:
    """`text` on a tag of `colour` just above (x, y), or just below it where the picture
    has no room above."""
    left, top, right, bottom = pen.textbbox((0, 0), text)
    high = bottom - top
    at = y - high - 2 if y >= high + 2 else y + 1
    pen.rectangle((x, at, x + right - left + 1, at + high + 1), fill=colour)
    luma = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
    ink = (0, 0, 0) if luma >= LIGHT else (255, 255, 255)
    pen.text((x + 1 - left, at - top), text, fill=ink)
