"""Box-moving augmentation: a scene scaled and shifted carries its boxes along, on the
scene's own device, and a box pushed out of the image is dropped."""

from __future__ import annotations

import pytest
import torch

from netspec.train.augment import augment_boxes
from netspec.trainspec import Augment

pytestmark = pytest.mark.usefixtures("one_thread")


def _ink_box(image: torch.Tensor) -> list[float]:
    """The pixel edges of what is brighter than half: x1, y1, x2, y2."""
    rows = torch.nonzero(image.amax(1) > 0.5).flatten()
    cols = torch.nonzero(image.amax(0) > 0.5).flatten()
    return [float(cols[0]), float(rows[0]), float(cols[-1] + 1), float(rows[-1] + 1)]


def _scenes(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` 64x64 scenes, each one bright rectangle (and one empty row of boxes)."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(n, 1, 64, 64)
    y = torch.full((n, 2, 5), -1.0)
    for i in range(n):
        x1, y1 = (int(v) for v in torch.randint(16, 28, (2,), generator=gen))
        w, h = (int(v) for v in torch.randint(8, 16, (2,), generator=gen))
        x[i, 0, y1 : y1 + h, x1 : x1 + w] = 1.0
        y[i, 0] = torch.tensor([i % 10, x1, y1, x1 + w, y1 + h], dtype=torch.float32)
    return x, y


def test_the_boxes_move_with_the_scene() -> None:
    x, y = _scenes(12)
    spec = Augment(scale=(0.7, 1.4), shift=6.0)
    moved, boxes = augment_boxes(x, y, spec, torch.Generator().manual_seed(1))
    assert moved.shape == x.shape and boxes.shape == y.shape
    assert not torch.equal(moved, x)
    for i in range(len(x)):
        assert boxes[i, 0, 0] == y[i, 0, 0]  # the class stays
        assert boxes[i, 1, 0] == -1  # padding stays padding
        got = _ink_box(moved[i, 0])
        torch.testing.assert_close(torch.tensor(got), boxes[i, 0, 1:], atol=1.01, rtol=0)


def test_a_box_pushed_out_of_the_image_is_dropped_and_one_cut_in_half_is_cut() -> None:
    x = torch.zeros(2, 1, 32, 32)
    y = torch.tensor([[[3.0, 0.0, 0.0, 4.0, 4.0]], [[5.0, 0.0, 10.0, 12.0, 20.0]]])
    spec = Augment(shift=6.0)
    gen = torch.Generator().manual_seed(0)
    kept = []
    for _ in range(20):  # some draw shifts left or up by more than 2 pixels
        _, boxes = augment_boxes(x, y, spec, gen)
        first = boxes[0, 0]
        kept.append(bool(first[0] >= 0))
        if first[0] >= 0:  # kept: at least half of it is inside, and it is cut to the image
            assert float(first[1]) >= 0 and float(first[2]) >= 0
            left = (first[3] - first[1]) * (first[4] - first[2])
            assert float(left) >= 8.0
        assert float(boxes[1, 0, 3]) <= 32 and float(boxes[1, 0, 1]) >= 0
    assert any(kept) and not all(kept)
    _, pushed = augment_boxes(x, y, Augment(scale=(1.0, 1.0), shift=0.0), gen)
    assert torch.equal(pushed, y)


def test_without_scale_or_shift_nothing_moves() -> None:
    x, y = _scenes(2)
    moved, boxes = augment_boxes(x, y, Augment(), torch.Generator())
    assert moved is x and boxes is y
