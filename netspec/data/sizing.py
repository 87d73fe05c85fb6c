"""How an image of any size is brought to a network's input of H x W, the one rule for the
readers (image folders), training (arrays) and `netspec run`.

With a train section's `resize N`, as torchvision's `Resize(N)` then `CenterCrop`: the
image is scaled so that its shorter side is N pixels, or more where N would leave it
smaller than the input, then its centre is cut to H x W. Training with random crops
(`random_resized_crop`) keeps more of each training image instead: the centre box of the
input's shape whose shorter side is N (`train_size`), from which each epoch cuts afresh.

>>> scaled((300, 400), 36, (32, 32))
(36, 48)
>>> scaled((300, 400), 16, (32, 32)), centre((36, 48), (32, 32))
((32, 43), (2, 8))
>>> train_size((32, 32), 40, crops=True), train_size((32, 32), 40, crops=False)
((40, 40), (32, 32))
"""

from __future__ import annotations

__all__ = ["centre", "scaled", "train_size"]


def scaled(size: tuple[int, int], resize: int, out: tuple[int, int]) -> tuple[int, int]:
    """(H, W) of an image of ``size`` once its shorter side is ``resize`` pixels, or as
    much more as it takes to cover ``out``."""
    h, w = size
    factor = max(resize / min(h, w), out[0] / h, out[1] / w)
    return max(out[0], round(h * factor)), max(out[1], round(w * factor))


def centre(size: tuple[int, int], out: tuple[int, int]) -> tuple[int, int]:
    """(top, left) of the ``out`` box at the centre of an image of ``size``."""
    return (size[0] - out[0]) // 2, (size[1] - out[1]) // 2


def train_size(size: tuple[int, int], resize: int | None, crops: bool) -> tuple[int, int]:
    """(H, W) that training images are kept at: the input's ``size``; with random crops and a
    `resize` rule, the box of the input's shape whose shorter side is ``resize`` (never less
    than the input)."""
    if not crops or resize is None:
        return size
    factor = max(1.0, resize / min(size))
    return round(size[0] * factor), round(size[1] * factor)
