"""YOLO v1's loss against a direct, loop-based reading of the paper's formula (values and
gradients), and boxes drawn into a grid and decoded back."""

from __future__ import annotations

import math

import pytest
import torch

from netspec.lower.detection import decode
from netspec.ops.detection import Head
from netspec.tasks.yolo import encode, target_map, yolo_loss

pytestmark = pytest.mark.usefixtures("one_thread")


def _head(grid: int = 3, boxes: int = 2, classes: int = 3, image: int = 48) -> Head:
    step = image / grid
    return Head(grid, boxes, classes, 0.2, 0.5, (step, step), (step, step), (0, 0), (image, image))


def _random_boxes(gen: torch.Generator, n: int, k: int, head: Head) -> torch.Tensor:
    """Padded boxes ``(n, k, 5)`` inside the image, some rows empty (class -1)."""
    size = head.image[0]
    w = 4 + torch.rand(n, k, generator=gen) * (size / 2)
    h = 4 + torch.rand(n, k, generator=gen) * (size / 2)
    x1 = torch.rand(n, k, generator=gen) * (size - w)
    y1 = torch.rand(n, k, generator=gen) * (size - h)
    cls = torch.randint(0, head.classes, (n, k), generator=gen).float()
    cls[torch.rand(n, k, generator=gen) < 0.3] = -1
    return torch.stack([cls, x1, y1, x1 + w, y1 + h], -1)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / max(union, 1e-9)


def _reference(
    out: torch.Tensor, y: torch.Tensor, head: Head, l_coord: float, l_noobj: float
) -> torch.Tensor:
    """The paper's loss, one cell and one predictor at a time."""
    s, nb, size = head.grid, head.boxes, head.image[0]
    total = out.new_zeros(())
    for n in range(out.shape[0]):
        cell_box: dict[tuple[int, int], tuple[int, tuple[float, ...]]] = {}
        for row in y[n].tolist():  # the first box whose centre falls in a cell is its box
            c, x1, y1, x2, y2 = row
            if c < 0:
                continue
            i = min(int((y1 + y2) / 2 / size * s), s - 1)
            j = min(int((x1 + x2) / 2 / size * s), s - 1)
            cell_box.setdefault((i, j), (int(c), (x1, y1, x2, y2)))
        for i in range(s):
            for j in range(s):
                p = out[n, :, i, j]
                if (i, j) not in cell_box:
                    for b in range(nb):
                        total = total + l_noobj * p[b * 5 + 4] ** 2
                    continue
                c, (x1, y1, x2, y2) = cell_box[(i, j)]
                tx = (x1 + x2) / 2 / size * s - j
                ty = (y1 + y2) / 2 / size * s - i
                tw, th = (x2 - x1) / size, (y2 - y1) / size
                ious = []
                for b in range(nb):
                    px, py, pw, ph = (float(v) for v in p[b * 5 : b * 5 + 4].detach())
                    cx, cy, w, h = (j + px) / s, (i + py) / s, pw * pw, ph * ph
                    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                    ious.append(_iou(box, (x1 / size, y1 / size, x2 / size, y2 / size)))
                r = max(range(nb), key=lambda b: (ious[b], -b))
                for b in range(nb):
                    q = p[b * 5 : b * 5 + 5]
                    if b != r:
                        total = total + l_noobj * q[4] ** 2
                        continue
                    total = total + l_coord * ((q[0] - tx) ** 2 + (q[1] - ty) ** 2)
                    total = total + l_coord * (
                        (q[2] - math.sqrt(tw)) ** 2 + (q[3] - math.sqrt(th)) ** 2
                    )
                    total = total + (q[4] - ious[b]) ** 2
                for k in range(head.classes):
                    total = total + (p[nb * 5 + k] - (1.0 if k == c else 0.0)) ** 2
    return total


@pytest.mark.parametrize("seed", range(6))
def test_loss_matches_the_papers_formula_in_value_and_gradient(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    head = _head(grid=2 + seed % 3, boxes=1 + seed % 3, classes=2 + seed % 2)
    y = _random_boxes(gen, 3, 4, head)
    raw = torch.rand(3, head.boxes * 5 + head.classes, head.grid, head.grid, generator=gen)
    l_coord, l_noobj = (5.0, 0.5) if seed % 2 else (2.0, 0.1)
    ours = raw.double().clone().requires_grad_(True)
    theirs = raw.double().clone().requires_grad_(True)
    got = yolo_loss(ours, y, head, l_coord, l_noobj)
    want = _reference(theirs.float(), y, head, l_coord, l_noobj)
    got.backward()  # type: ignore[no-untyped-call]
    want.backward()  # type: ignore[no-untyped-call]
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-5)
    assert ours.grad is not None and theirs.grad is not None
    torch.testing.assert_close(ours.grad, theirs.grad, rtol=1e-4, atol=1e-5)
    assert float(ours.grad.abs().sum()) > 0


def test_a_perfect_map_costs_nothing() -> None:
    """Predicting every box exactly (IoU 1, confidence 1, its class alone) costs 0."""
    gen = torch.Generator().manual_seed(7)
    head = _head(grid=4, boxes=2, classes=3)
    y = _random_boxes(gen, 2, 1, head)
    assert float(yolo_loss(target_map(y, head), y, head)) == pytest.approx(0.0, abs=1e-6)


def _one_per_cell(gen: torch.Generator, n: int, k: int, head: Head) -> torch.Tensor:
    """``(n, k, 5)`` boxes inside the image whose centres fall in k different cells."""
    size, s = head.image[0], head.grid
    rows = []
    for _ in range(n):
        cells = torch.randperm(s * s, generator=gen)[:k].tolist()
        image = []
        for cell in cells:
            cx = (cell % s + 0.05 + 0.9 * float(torch.rand(1, generator=gen))) * size / s
            cy = (cell // s + 0.05 + 0.9 * float(torch.rand(1, generator=gen))) * size / s
            half = 1 + torch.rand(2, generator=gen) * min(cx, cy, size - cx, size - cy)
            c = float(torch.randint(0, head.classes, (1,), generator=gen))
            image.append([c, cx - half[0], cy - half[1], cx + half[0], cy + half[1]])
        rows.append(image)
    return torch.tensor(rows)


def test_boxes_drawn_into_the_grid_decode_to_the_same_boxes() -> None:
    gen = torch.Generator().manual_seed(3)
    head = _head(grid=7, boxes=2, classes=10, image=112)
    y = _one_per_cell(gen, 4, 5, head)
    boxes, scores = decode(target_map(y, head), head)
    assert boxes.shape == (4, 7 * 7 * 2, 4) and scores.shape == (4, 7 * 7 * 2, 10)
    for n in range(len(y)):
        kept = torch.nonzero(scores[n] > 0.5)  # (box, class) pairs
        assert len(kept) == len(y[n])
        found = sorted((int(c), *boxes[n, k].tolist()) for k, c in kept.tolist())
        want = sorted(tuple(row) for row in y[n].tolist())
        torch.testing.assert_close(torch.tensor(found), torch.tensor(want), atol=1e-4, rtol=0)
    assert torch.equal(encode(y, head).obj.sum((1, 2)), torch.full((4,), 5))
