"""COCO's mAP through pycocotools, checked where the answer is known: ground truth as its
own detections, boxes shifted to a known IoU, and a case small enough to work out by hand;
and the pictures drawn from them, checked pixel by pixel."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from netspec.detection.coco import evaluate, recall_points
from netspec.detection.plots import (
    FALSE_ALARM,
    MATCHED,
    MISSED,
    TRUE,
    detections_grid,
    match,
    plot_pr,
)
from netspec.errors import DataError


@dataclass(frozen=True)
class Boxes:
    boxes: npt.NDArray[np.float32]
    classes: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    image: npt.NDArray[np.uint8] = field(default_factory=lambda: np.zeros((40, 40), np.uint8))


def boxes(rows: list[list[float]], classes: list[int], scores: list[float] | None = None) -> Boxes:
    b = np.asarray(rows, np.float32).reshape(-1, 4)
    s = np.asarray(scores if scores is not None else [1.0] * len(classes), np.float32)
    return Boxes(b, np.asarray(classes, np.int64), s)


TRUTH = [
    boxes([[2, 2, 22, 22], [25, 5, 35, 30]], [3, 7]),
    boxes([[10, 10, 30, 20]], [3]),
]


def test_ground_truth_as_detections_scores_one() -> None:
    m = evaluate(TRUTH, TRUTH)
    assert (m.map50, m.map) == pytest.approx((1.0, 1.0), abs=1e-12)
    assert set(m.per_class) == {3, 7}
    assert all(v == pytest.approx((1.0, 1.0), abs=1e-12) for v in m.per_class.values())


def test_boxes_shifted_to_iou_074_pass_half_the_thresholds() -> None:
    """A 20-wide box moved 3 px keeps IoU 17/23 = 0.739: a hit at IoU 0.5..0.7 (5 of the
    10 thresholds), a miss above."""
    truth = [boxes([[0, 0, 20, 20]], [1])]
    shifted = [boxes([[3, 0, 23, 20]], [1])]
    m = evaluate(truth, shifted)
    assert m.map50 == pytest.approx(1.0)
    assert m.map == pytest.approx(0.5)
    far = evaluate(truth, [boxes([[11, 0, 31, 20]], [1])])  # IoU 9/31: no hit at all
    assert (far.map50, far.map) == (0.0, 0.0)


def test_a_case_worked_out_by_hand() -> None:
    """Two true boxes, three detections by score: a hit (IoU 1), a false alarm, a hit of
    IoU 0.626 (a miss from IoU 0.65 up). COCO's 101-point interpolated precision:
    thresholds 0.5..0.6: precision 1 up to recall 0.5 (51 points), 2/3 beyond (50 points);
    thresholds 0.65..0.95: precision 1 up to recall 0.5, 0 beyond."""
    truth = [boxes([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    found = [
        boxes([[0, 0, 10, 10], [50, 50, 60, 60], [22.3, 20, 32.3, 30]], [0, 0, 0], [0.9, 0.8, 0.7])
    ]
    high, low = (51 + 50 * 2 / 3) / 101, 51 / 101
    m = evaluate(truth, found)
    assert m.map50 == pytest.approx(high, abs=1e-9)
    assert m.map == pytest.approx((3 * high + 7 * low) / 10, abs=1e-9)
    assert m.precision50[:51, 0] == pytest.approx(1.0)
    assert m.precision50[51:, 0] == pytest.approx(2 / 3)


def test_no_detections_and_bad_input() -> None:
    empty = [boxes([], []) for _ in TRUTH]
    assert evaluate(TRUTH, empty).map50 == 0.0
    with pytest.raises(DataError, match="ground truth but detections for 1"):
        evaluate(TRUTH, TRUTH[:1])
    with pytest.raises(DataError, match=r"a class out of 0\.\.9"):
        evaluate(TRUTH, [boxes([[0, 0, 5, 5]], [10]), TRUTH[1]])
    with pytest.raises(DataError, match="differ in length"):
        evaluate(TRUTH, [Boxes(TRUTH[0].boxes, TRUTH[0].classes, np.ones(1, np.float32)), TRUTH[1]])


def test_match_is_greedy_by_score_and_per_class() -> None:
    truth = boxes([[0, 0, 10, 10], [20, 0, 30, 10]], [1, 2])
    found = boxes([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10]], [1, 1, 1], [0.5, 0.9, 0.8])
    hit, seen = match(truth, found)
    assert hit.tolist() == [False, True, False]  # the better score takes the box; class 2 is not 1
    assert seen.tolist() == [True, False]


def test_detections_png_marks_hits_misses_and_false_alarms(tmp_path: Path) -> None:
    truth = Boxes(np.asarray([[2, 2, 12, 12], [20, 20, 30, 30]], np.float32), np.asarray([1, 2]))
    found = boxes([[2, 2, 12, 12], [25, 2, 35, 12]], [1, 4], [0.9, 0.6])
    path = detections_grid(tmp_path / "detections.png", [truth], [found], zoom=2)
    picture = np.asarray(Image.open(path).convert("RGB"))
    at = lambda x, y: tuple(picture[2 + y, 2 + x])  # noqa: E731 (the scene sits at 2, 2)
    assert at(4, 14) == MATCHED  # found box's left edge (drawn over the true one), x2 zoom
    assert at(40, 50) == MISSED  # the digit 2 nobody found
    assert at(50, 10) == FALSE_ALARM  # the 4 that is not there
    assert at(14, 14) == (0, 0, 0)  # inside a box: the scene itself
    legend = picture[-16:].reshape(-1, 3)
    assert all((legend == c).all(axis=1).any() for c in (TRUE, MATCHED, MISSED, FALSE_ALARM))


def test_pr_png_draws_each_class_curve(tmp_path: Path) -> None:
    m = evaluate(TRUTH, [TRUTH[0], boxes([[40, 40, 50, 50]], [3], [0.5])])
    assert m.per_class[7][0] == pytest.approx(1.0) and m.per_class[3][0] < 0.9
    picture = np.asarray(Image.open(plot_pr(tmp_path / "pr.png", m)).convert("RGB")).astype(int)
    blue, orange = np.array([31, 119, 180]), np.array([255, 127, 14])  # matplotlib's C0, C1
    for colour in (blue, orange):
        assert (np.abs(picture - colour).sum(axis=2) < 30).sum() > 100
    assert len(recall_points()) == m.precision50.shape[0] == 101
