"""An opened image's pixels, one way for every reader: `netspec run`'s files, image folders,
scenes folders and the page's uploads.

Pillow converts a 16-bit grey image (`I;16`) to 8-bit `L` by clipping, not scaling: every
value above 255 becomes white, so a 16-bit scan turns into a white square. Here 16-bit
grey is scaled by 65535 instead. Pillow is not imported: the caller opened the image.

>>> from PIL import Image
>>> deep = Image.fromarray(np.array([[0, 32896, 65535]], np.uint16))
>>> deep.mode, byte_pixels(deep, 1).tolist(), np.asarray(deep.convert("L")).tolist()
('I;16', [[0, 128, 255]], [[0, 255, 255]])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["SIXTEEN_BIT", "byte_pixels", "unit_pixels"]

SIXTEEN_BIT = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I"})  # Pillow's deep grey modes


def unit_pixels(image: Image, channels: int) -> npt.NDArray[np.float32]:
    """The pixels as floats in [0, 1]: ``(H, W)`` for ``channels`` 1, ``(H, W, 3)`` for 3
    (8-bit images by 255, 16-bit grey by 65535)."""
    if image.mode not in SIXTEEN_BIT:
        converted = image.convert("L" if channels == 1 else "RGB")
        return np.asarray(converted, np.float32) / np.float32(255.0)
    grey = np.clip(np.asarray(image, np.float32) / np.float32(65535.0), 0, 1)
    return grey if channels == 1 else np.repeat(grey[:, :, None], 3, axis=2)


def byte_pixels(image: Image, channels: int) -> npt.NDArray[np.uint8]:
    """The pixels as uint8, ``(H, W)`` or ``(H, W, 3)``: `unit_pixels` rounded to 0..255
    (an 8-bit image as it is)."""
    if image.mode not in SIXTEEN_BIT:
        return np.asarray(image.convert("L" if channels == 1 else "RGB"), np.uint8)
    return np.round(unit_pixels(image, channels) * 255).astype(np.uint8)
