"""Training a single-shot detector: what the training side refuses before anything runs."""

from __future__ import annotations

import numpy as np
import pytest

import netspec
from netspec.data import DataError
from netspec.train.targets import Target, target_of
from netspec.train.yolo import box_targets, check_box_augments
from netspec.trainspec import Augment, Loss

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = """
network tiny(image: 1x32x32) {
    conv 8 3x3 pad=same | relu | maxpool 2x2 | maxpool 2x2
    boxes = conv 8 1x1 | detect boxes=1 classes=3
    output boxes
}
"""


def _target() -> Target:
    return target_of(netspec.compile(TINY), Loss(name="yolo"))


def _boxes(rows: list[list[float]]) -> np.ndarray:
    return np.array([rows], np.float32)


def test_good_boxes_pass_and_padding_is_kept() -> None:
    train = _boxes([[2, 0, 0, 32, 32], [-1, -1, -1, -1, -1]])
    got = box_targets(train, train, (32, 32), (32, 32), _target(), "scenes")
    assert np.array_equal(got[0], train)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ([3, 1, 1, 5, 5], "class the head does not predict"),
        ([1.5, 1, 1, 5, 5], "class the head does not predict"),
        ([0, 1, 1, 33, 5], "box outside its image"),
        ([0, -1, 1, 5, 5], "box outside its image"),
        ([0, 6, 1, 5, 5], "box outside its image"),
    ],
)
def test_bad_boxes_are_refused_naming_the_scene_and_box(row: list[float], message: str) -> None:
    good = _boxes([[0, 1, 1, 5, 5], [0, 1, 1, 5, 5]])
    bad = _boxes([[0, 1, 1, 5, 5], row])
    with pytest.raises(DataError, match=f"scenes: test scene 0, box 1: a {message}"):
        box_targets(good, bad, (32, 32), (32, 32), _target(), "scenes")


def test_scenes_of_another_size_are_refused() -> None:
    y = _boxes([[0, 1, 1, 5, 5]])
    with pytest.raises(DataError, match="scenes of 64x64 for a detector whose input is 32x32"):
        box_targets(y, y, (64, 64), (32, 32), _target(), "scenes")


def test_loss_yolo_needs_a_head_and_a_head_needs_loss_yolo() -> None:
    classifier = netspec.compile("network c(x: 1x8x8) {\n    dense 10\n}\n")
    with pytest.raises(DataError, match="loss yolo trains a detection head"):
        target_of(classifier, Loss(name="yolo"))
    with pytest.raises(DataError, match="it trains with loss yolo, not loss mse"):
        target_of(netspec.compile(TINY), Loss(name="mse"))


def test_a_detectors_augmentation_only_scales_and_shifts() -> None:
    check_box_augments(Augment(scale=(0.8, 1.2), shift=4))
    with pytest.raises(DataError, match="not rotate, elastic"):
        check_box_augments(Augment(rotate=10, elastic_alpha=3))
