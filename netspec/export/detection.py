"""A detector's export: the ONNX graph holds the network and its decoding, and the metadata
says how ONNX Runtime reads what comes out.

A network that ends in a detection head (`detect boxes=2 classes=10`) is exported as the
network followed by the head's decoding (`netspec.lower.detection.Decoded`, the same torch
code training measures its mAP with), so the file's one output is ``(N, S*S*B, 4 + C)``: each
proposed box's corners x1, y1, x2, y2 in input pixels, then its class-specific confidences
(Pr(class | object) * confidence). Thresholds and class-wise non-maximum suppression come
after the session, in `netspec detect` (numpy, `netspec.detection.boxes`): ONNX's
NonMaxSuppression returns a variable number of indices that every caller would have to
gather again, and keeping it out leaves the graph's output a plain fixed-shape tensor that
`netspec run` and the export's own check against PyTorch compare like any other.

The metadata's `decoding` entry is the head operation's own (`OpDef.decoding`: for
`detect`, the grid, boxes, classes and thresholds, read by the runtime's `single_shot`
decoder); nothing here knows one head from another. `readable` checks the metadata as
`netspec run` and `netspec detect` will read it, its decoding by the decoder it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netspec.artifact import Decoding, ModelInfo, OutputInfo, from_props
from netspec.errors import ExportError, ModelError
from netspec.kinds import detection_head, head_node, output_infos
from netspec.ops import REGISTRY
from netspec.runtime.detect import detector

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


def decoding(compiled: Compiled) -> Decoding | None:
    """The metadata's `decoding` entry: how the operation of the network's head says its
    output becomes boxes (its `OpDef.decoding`); None without a head, or where a symbolic
    size leaves it unknown."""
    node = head_node(compiled)
    rule = None if node is None else REGISTRY[node.op].decoding
    if node is None or rule is None:
        return None
    layer = compiled.inferred.layer(node.name)
    return rule(node.params, tuple(layer.shape), layer.rf, compiled.graph.inputs[0].shape)


def readable(info: ModelInfo, path: Path) -> None:
    """Refuse (ExportError) metadata that `netspec run` or `netspec detect` would refuse:
    every field as `from_props` checks it, and a decoding as its decoder reads it."""
    try:
        from_props(info.to_props(), str(path))
        if info.decoding is not None:
            detector(info, str(path))
    except ModelError as e:  # MetadataError is one
        raise ExportError(f"cannot write this metadata: {e}") from None
