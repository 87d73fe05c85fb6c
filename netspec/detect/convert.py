"""`netspec convert --fully-convolutional`: a window classifier (a spec, or a run and its
weights, opened by netspec.train.opening.open_target) written as its fully convolutional
network (OverFeat, netspec.export.fcn), checked against the sliding window on the images
given and, for a classifier of MNIST scene windows, on a test scene, its classes' boxes
framed as the windows frame their digits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from netspec.artifact import InputInfo
from netspec.compiler import Compiled
from netspec.data.registry import dataset
from netspec.export.fcn import FcnReport, export_fcn, fully_convolutional, ink_boxes
from netspec.export.onnx_export import input_infos
from netspec.runtime.detect_files import read_images
from netspec.train.opening import Opened

Log = Callable[[str], None]
Boxes = tuple[tuple[float, float], ...]


def convert_fcn(
    opened: Opened,
    output: Path,
    *,
    labels: tuple[str, ...] | None,
    images: Sequence[Path],
    opset: int,
    log: Log,
) -> FcnReport:
    """Write `opened`'s classifier to `output` as its FCN, its classes named `labels`
    (default: the training set's); refused before any weights load where it cannot be."""
    compiled = opened.compiled
    fully_convolutional(compiled)  # refuse what cannot convert before anything is loaded
    module = opened.module(log)
    given = input_infos(compiled)[0]
    checks = [image for _, image in read_images(given, images, notice=log)]
    boxes = None
    if _windows(compiled):
        boxes, scene = _digit_windows(labels, given, log)
        checks.append(scene)
    return export_fcn(
        compiled, output, module, labels=labels, boxes=boxes, images=checks, opset=opset, log=log
    )


def _windows(compiled: Compiled) -> bool:
    """Whether the classifier trains on windows cut from scenes (its record says)."""
    known = dataset(compiled.train.dataset) if compiled.train is not None else None
    return known is not None and known.windows


def _digit_windows(
    names: tuple[str, ...] | None, given: InputInfo, log: Log
) -> tuple[Boxes, npt.NDArray[np.float32]]:
    """For a classifier of MNIST scene windows: the digits' box shapes in their windows
    (MNIST's training digits framed as netspec.data.windows frames them: its ink share,
    the scenes' ink threshold), and a randomized 128x128 test scene to check the FCN on."""
    from netspec.data.mnist import load_mnist
    from netspec.data.scenes import INK, DigitPool, SceneConfig, make_scene
    from netspec.data.windows import INK_SHARE, LABELS

    digits = load_mnist(log=log)
    labels = digits.train_y.astype(np.int64)
    boxes = ink_boxes(digits.train_x, labels, names or LABELS, INK_SHARE, INK)
    scene = make_scene(SceneConfig.randomized(split="test"), DigitPool.of(digits, "test"), 0)
    image = given.normalize(scene.image.astype(np.float32)[None, None] / np.float32(255))
    log("checking on a randomized 128x128 test scene too")
    return boxes, image
