"""Images that come in over HTTP: a drawn canvas (base64 pixels at the input's size) or an
uploaded file (PNG, JPEG, ... decoded by Pillow), each checked before it is used, and
test digits fitted to the network's input. A mistake is a `BadRequest` (a 4xx)."""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from netspec.data.pixels import byte_pixels

MAX_UPLOAD_PIXELS = 4096 * 4096  # an upload's header is checked against this before decoding
MAX_ASPECT = 64  # a 16000000x1 "picture" is refused from its header, not decoded


class BadRequest(Exception):
    """A request the server refuses: its HTTP status and the message the page shows."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def input_size(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(H, W, C) of an image input (C x H x W); a network without one cannot be served."""
    if len(input_shape) != 3 or input_shape[0] not in (1, 3):
        raise ValueError(f"input {'x'.join(map(str, input_shape))}")
    c, h, w = input_shape
    return h, w, c


def drawn(body: Any, size: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """The image of POST /api/run, ``{"height", "width", "channels", "pixels"}`` with
    ``pixels`` the base64 of H*W*C uint8 values (row-major, channels last), as ``(H, W, C)``."""
    if not isinstance(body, dict):
        raise BadRequest("expected a JSON object with height, width, channels and pixels")
    h, w, c = size
    given = tuple(body.get(k) for k in ("height", "width", "channels"))
    if given != (h, w, c) or any(isinstance(v, bool) for v in given):
        raise BadRequest(
            f"the image must be {h}x{w} with {c} channel(s), the network's input; "
            f"got height, width, channels = {given}",
            422,
        )
    pixels = body.get("pixels")
    if not isinstance(pixels, str):
        raise BadRequest("'pixels' must be a base64 string of uint8 values", 422)
    try:
        raw = base64.b64decode(pixels, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("'pixels' is not valid base64", 422) from None
    if len(raw) != h * w * c:
        raise BadRequest(
            f"'pixels' holds {len(raw)} bytes; a {h}x{w}x{c} image is {h * w * c}", 422
        )
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w, c)


def uploaded(data: bytes, size: tuple[int, int, int]) -> tuple[npt.NDArray[np.uint8], bool]:
    """An uploaded image file fitted to the input (see `fit`); for a one-channel network,
    dark ink on light paper is inverted to MNIST's light ink on black. Returns the image
    and whether it was inverted."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as opened:
                _check_declared(opened.width, opened.height)
                opened.draft("L" if size[2] == 1 else "RGB", (size[1], size[0]))  # JPEG: scaled
                array = byte_pixels(opened, size[2])  # 16-bit grey scaled, not clipped
    except Image.DecompressionBombError:
        raise BadRequest(f"the image is larger than {MAX_UPLOAD_PIXELS:,} pixels", 413) from None
    except (UnidentifiedImageError, OSError, Image.DecompressionBombWarning, ValueError) as e:
        raise BadRequest(f"cannot read the upload as an image ({e})", 422) from None
    array = array[:, :, None] if array.ndim == 2 else array
    invert = size[2] == 1 and _light_background(array)
    if invert:
        array = 255 - array
    return fit(array, size), invert


def _check_declared(width: int, height: int) -> None:
    """Refuse, from the header alone, a picture too large to decode or too thin to show."""
    if width * height > MAX_UPLOAD_PIXELS:
        raise BadRequest(
            f"the image is {width}x{height}; at most {MAX_UPLOAD_PIXELS:,} pixels are read", 413
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise BadRequest(
            f"the image is {width}x{height}; expected a picture at most {MAX_ASPECT} times as "
            "long as it is wide",
            422,
        )


def plain(image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """``(H, W, C)`` as the probe takes an image: ``(H, W)`` for one channel."""
    return image[:, :, 0] if image.shape[2] == 1 else image


def _light_background(image: npt.NDArray[np.uint8]) -> bool:
    """Whether the border of the image is mostly light (paper), as a photo of ink is."""
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return float(np.median(border)) > 127


def fit(image: npt.NDArray[np.uint8], size: tuple[int, int, int]) -> npt.NDArray[np.uint8]:
    """``image`` (H, W, C) at the input's size: scaled to fit inside it, keeping its aspect
    ratio, and centred on black (MNIST's background)."""
    h, w, c = size
    if image.shape == (h, w, c):
        return image
    if image.shape[2] != c:
        image = np.repeat(image[:, :, :1], c, axis=2) if c == 3 else image[:, :, :1]
    scale = min(h / image.shape[0], w / image.shape[1])
    rh, rw = max(1, round(image.shape[0] * scale)), max(1, round(image.shape[1] * scale))
    mode = "L" if c == 1 else "RGB"
    resized = Image.fromarray(image[:, :, 0] if c == 1 else image, mode).resize(
        (rw, rh), Image.Resampling.LANCZOS
    )
    out = np.zeros((h, w, c), dtype=np.uint8)
    top, left = (h - rh) // 2, (w - rw) // 2
    out[top : top + rh, left : left + rw] = np.asarray(resized).reshape(rh, rw, c)
    return out
