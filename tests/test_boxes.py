"""Boxes, IoU and NMS (netspec.detection.boxes) against cases worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from netspec.detection.boxes import (
    Detections,
    area,
    as_boxes,
    clip,
    cxcywh_to_xyxy,
    iou,
    nms,
    nms_per_class,
    xywh_to_xyxy,
    xyxy_to_xywh,
)


def scores(*values: float) -> np.ndarray:
    return np.asarray(values, np.float32)


def test_area_of_boxes_and_of_boxes_turned_inside_out() -> None:
    boxes = as_boxes([[0, 0, 4, 3], [2, 2, 2, 9], [5, 5, 1, 1]])
    assert area(boxes).tolist() == [12.0, 0.0, 0.0]


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ([0, 0, 10, 10], [0, 0, 10, 10], 1.0),  # the same box
        ([0, 0, 10, 10], [5, 0, 15, 10], 50 / 150),  # half of each overlaps
        ([0, 0, 10, 10], [2, 2, 4, 4], 4 / 100),  # one inside the other
        ([0, 0, 10, 10], [10, 0, 20, 10], 0.0),  # touching edges: no area in common
        ([0, 0, 10, 10], [20, 20, 30, 30], 0.0),  # apart
        ([0, 0, 0, 0], [0, 0, 0, 0], 0.0),  # no area: no overlap, not NaN
        ([0, 0, 4, 4], [2, 2, 6, 6], 4 / 28),  # corners overlap by 2x2
    ],
)
def test_iou_by_hand(a: list[float], b: list[float], expected: float) -> None:
    got = iou(as_boxes([a]), as_boxes([b]))
    assert got.shape == (1, 1)
    assert got[0, 0] == pytest.approx(expected, abs=1e-6)


def test_iou_is_a_matrix_of_every_pair_and_symmetric() -> None:
    a = as_boxes([[0, 0, 10, 10], [5, 5, 15, 15], [100, 100, 101, 101]])
    b = as_boxes([[0, 0, 10, 10], [5, 0, 15, 10]])
    m = iou(a, b)
    assert m.shape == (3, 2)
    assert m[0].tolist() == pytest.approx([1.0, 1 / 3])
    assert m[1].tolist() == pytest.approx([25 / 175, 50 / 150])
    assert m[2].tolist() == [0.0, 0.0]
    assert np.allclose(iou(b, a), m.T)
    assert iou(a, as_boxes([])).shape == (3, 0)


def test_nms_keeps_the_best_and_drops_what_overlaps_it_more_than_the_threshold() -> None:
    boxes = as_boxes(
        [
            [0, 0, 10, 10],  # 0: 0.8
            [1, 0, 11, 10],  # 1: 0.9, overlaps 0 by 9/11
            [5, 0, 15, 10],  # 2: 0.7, overlaps 1 by 6/14, 0 by 1/3
            [50, 50, 60, 60],  # 3: 0.1, apart
        ]
    )
    assert nms(boxes, scores(0.8, 0.9, 0.7, 0.1), 0.5).tolist() == [1, 2, 3]
    assert nms(boxes, scores(0.8, 0.9, 0.7, 0.1), 0.3).tolist() == [1, 3]
    assert nms(boxes, scores(0.8, 0.9, 0.7, 0.1), 0.9).tolist() == [1, 0, 2, 3]


def test_nms_at_the_threshold_exactly_keeps_the_box() -> None:
    boxes = as_boxes([[0, 0, 10, 10], [0, 0, 10, 5]])  # IoU exactly 1/2
    assert nms(boxes, scores(0.9, 0.8), 0.5).tolist() == [0, 1]
    assert nms(boxes, scores(0.9, 0.8), 0.49).tolist() == [0]


def test_nms_chain_a_suppressed_box_suppresses_nothing() -> None:
    # b overlaps a and c; a and c do not overlap: a is kept, b goes, c stays
    boxes = as_boxes([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]])
    assert nms(boxes, scores(0.9, 0.8, 0.7), 0.2).tolist() == [0, 2]


def test_nms_of_equal_scores_keeps_the_first() -> None:
    boxes = as_boxes([[0, 0, 10, 10], [0, 0, 10, 10]])
    assert nms(boxes, scores(0.5, 0.5), 0.5).tolist() == [0]
    assert nms(as_boxes([]), scores(), 0.5).tolist() == []


def test_nms_per_class_never_suppresses_across_classes() -> None:
    boxes = as_boxes([[0, 0, 10, 10], [0, 0, 10, 10], [1, 0, 11, 10], [40, 0, 50, 10]])
    classes = np.array([3, 7, 3, 7], np.int64)
    kept = nms_per_class(boxes, scores(0.6, 0.9, 0.8, 0.2), classes, 0.5)
    assert kept.tolist() == [1, 2, 3]  # best first; box 0 loses to box 2 of its own class
    assert nms_per_class(as_boxes([]), scores(), np.zeros(0, np.int64), 0.5).tolist() == []


def test_box_forms_round_trip() -> None:
    boxes = as_boxes([[1, 2, 5, 10], [0, 0, 3, 3]])
    assert xyxy_to_xywh(boxes).tolist() == [[1, 2, 4, 8], [0, 0, 3, 3]]
    assert np.array_equal(xywh_to_xyxy(xyxy_to_xywh(boxes)), boxes)
    assert cxcywh_to_xyxy(as_boxes([[3, 6, 4, 8]])).tolist() == [[1, 2, 5, 10]]
    assert clip(as_boxes([[-3, 2, 50, 70]]), height=64, width=40).tolist() == [[0, 2, 40, 64]]


def test_detections_take_and_concat() -> None:
    a = Detections(as_boxes([[0, 0, 1, 1], [1, 1, 2, 2]]), scores(0.5, 0.7), np.array([1, 2]))
    both = Detections.concat([a, Detections.empty(), a.take(np.array([1]))])
    assert len(both) == 3 and both.classes.tolist() == [1, 2, 2]
    assert both.boxes.dtype == np.float32 and both.classes.dtype == np.int64
    assert len(Detections.concat([])) == 0


def test_the_module_examples_hold() -> None:
    import doctest

    import netspec.detection.boxes as module

    assert doctest.testmod(module).failed == 0
