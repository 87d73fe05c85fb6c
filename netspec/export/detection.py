"""A single-shot detector's export: the ONNX graph holds the network and its decoding.

A network that ends in a detection head (`detect boxes=2 classes=10`) is exported as the
network followed by the head's decoding (`netspec.lower.detection.Decoded`, the same torch
code training measures its mAP with), so the file's one output is ``(N, S*S*B, 4 + C)``: each
proposed box's corners x1, y1, x2, y2 in input pixels, then its class-specific confidences
(Pr(class | object) * confidence). Thresholds and class-wise non-maximum suppression come
after the session, in `netspec detect` (numpy, `netspec.detection.boxes`): ONNX's
NonMaxSuppression returns a variable number of indices that every caller would have to
gather again, and keeping it out leaves the graph's output a plain fixed-shape tensor that
`netspec run` and the export's own check against PyTorch compare like any other.
The metadata's `single_shot` entry records the grid, boxes, classes and thresholds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from netspec.artifact import OutputInfo, SingleShot
from netspec.kinds import detection_head, output_infos

if TYPE_CHECKING:
    import torch

    from netspec.compiler import Compiled


def decoded(compiled: Compiled, module: torch.nn.Module) -> torch.nn.Module:
    """The module to export: a detector's network with its decoding, any other as it is."""
    from netspec.lower.detection import Decoded

    head = detection_head(compiled)
    return module if head is None else Decoded(module, head).eval()


def exported_outputs(compiled: Compiled) -> tuple[OutputInfo, ...]:
    """The outputs the file holds: a detector's one output is its decoded boxes."""
    outputs = output_infos(compiled)
    head = detection_head(compiled)
    if head is None:
        return outputs
    shape = (head.per_image, 4 + head.classes)
    return (OutputInfo(outputs[0].name, "boxes", shape),)


def single_shot(compiled: Compiled) -> SingleShot | None:
    """The metadata's `single_shot` entry of a detector: what `netspec detect` needs."""
    head = detection_head(compiled)
    if head is None:
        return None
    return SingleShot(head.grid, head.boxes, head.classes, head.image, head.score, head.iou)
