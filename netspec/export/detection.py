"""A detector's export: the ONNX graph holds the network and its head's decoding, and the
metadata says how ONNX Runtime reads what comes out.

A network that ends in a head whose lowering declares a decoding (its builder's
`Lowered.decode`, netspec.lower.detection) is exported as the network followed by that
decoding, and the file's one output is what the decoding makes, of the kind and shape it
says. For `detect` (YOLO v1) that is ``(N, S*S*B, 4 + C)``: each proposed box's corners x1,
y1, x2, y2 in input pixels, then its class-specific confidences, the same torch code
training measures its mAP with; thresholds and class-wise non-maximum suppression come
after the session, in `netspec detect` (numpy, `netspec.detection.boxes`). A head may also
select its boxes in the graph (`ssd`: threshold, NMS and a fixed number of rows).

The metadata's `decoding` entry is the head operation's own (`OpDef.decoding`: for
`detect`, the grid, boxes, classes and thresholds, read by the runtime's `single_shot`
decoder). Nothing here knows one head from another. `readable` checks the metadata as
`netspec run` and `netspec detect` will read it, its decoding by the decoder it names.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from netspec.artifact import Decoding, ModelInfo, OutputInfo, from_props
from netspec.errors import ExportError, ModelError
from netspec.kinds import head_node, head_site, output_infos
from netspec.ops import REGISTRY
from netspec.runtime.detect import detector

if TYPE_CHECKING:
    import torch

    from netspec.compiler import Compiled
    from netspec.lower.detection import Exported


def exported_head(compiled: Compiled) -> Exported | None:
    """What the network's head appends to the exported graph (its lowering's `decode`),
    None without a head that decodes, or where a symbolic size leaves it unknown."""
    from netspec.lower import BUILDERS

    site, node = head_site(compiled), head_node(compiled)
    if site is None or node is None:
        return None
    rule = BUILDERS[node.op](site.params, list(site.inputs), site.shape).decode
    return None if rule is None else rule(site)


def decoded(compiled: Compiled, module: torch.nn.Module) -> torch.nn.Module:
    """The module to export: a network with its head's decoding, any other as it is."""
    from netspec.lower.detection import Decoded

    head = exported_head(compiled)
    return module if head is None else Decoded(module, head.module).eval()


def exported_outputs(compiled: Compiled) -> tuple[OutputInfo, ...]:
    """The outputs the file holds: a decoding head's one output is what it decodes to."""
    outputs = output_infos(compiled)
    head = exported_head(compiled)
    if head is None:
        return outputs
    return (OutputInfo(outputs[0].name, head.kind, head.shape),)


def decoding(compiled: Compiled) -> Decoding | None:
    """The metadata's `decoding` entry: how the operation of the network's head says its
    output becomes boxes (its `OpDef.decoding`); None without a head, or where a symbolic
    size leaves it unknown."""
    site, node = head_site(compiled), head_node(compiled)
    rule = None if node is None else REGISTRY[node.op].decoding
    if site is None or rule is None:
        return None
    return rule(site.params, site.shape, site.rf, site.image)


def readable(info: ModelInfo, path: Path) -> None:
    """Refuse (ExportError) metadata that `netspec run` or `netspec detect` would refuse:
    every field as `from_props` checks it, and a decoding as its decoder reads it."""
    try:
        from_props(info.to_props(), str(path))
        if info.decoding is not None:
            detector(info, str(path))
    except ModelError as e:  # MetadataError is one
        raise ExportError(f"cannot write this metadata: {e}") from None
