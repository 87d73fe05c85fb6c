"""Detection on ONNX Runtime: a detector file and an image in, boxes out (never torch).

A detector file names in its metadata how its outputs become boxes: its `decoding`
(netspec.artifact.Decoding), a decoder's name and parameters. `detector` looks the name up
among the decoders (netspec.runtime.decoders: `single_shot` for a single-shot grid,
`sliding_window` for a classifier made fully convolutional), has it check its parameters
against the file, and returns it ready (`Detector`); `detect` runs it on one image. The
image is model-ready values at its own size, (1, C, H, W); the boxes come back in its pixels
(xyxy), best first, after class-wise non-maximum suppression, the background class dropped.
Nothing here knows one decoder from another: a new kind of detector is a new module in
netspec/runtime/decoders/.

The boxes, their NMS and their painter are netspec.detection's, shared with training.
`netspec detect`'s loop over image files is netspec.runtime.detect_files; `netspec eval`
on scenes is netspec.runtime.evaluate.
"""

from __future__ import annotations

from typing import Any

from netspec.artifact import ModelInfo
from netspec.detection.boxes import Detections
from netspec.errors import ModelError
from netspec.runtime.decoders import DECODERS
from netspec.runtime.decoders.base import SCALES, DetectOptions, Detector, FloatArray
from netspec.runtime.session import Model

__all__ = ["SCALES", "DetectOptions", "Detector", "detect", "detector"]


def detector(info: ModelInfo, source: str) -> Detector[Any]:
    """The decoder the file's `decoding` names, with the parameters it read; a ModelError
    (or MetadataError) naming `source` where the file is no detector this netspec can run."""
    kinds = tuple(o.kind for o in info.outputs)
    decoding = info.decoding
    if decoding is None:
        readers = [d for d in DECODERS.values() if d.outputs == kinds]
        if len(readers) == 1:
            raise ModelError(f"{source}: {readers[0].missing} (no {readers[0].name})")
        if readers:  # one kind of output, several heads (ssd, two_stage): say each
            names = " or ".join(d.name for d in readers)
            raise ModelError(f"{source}: {' and '.join(kinds)} without their decoding (no {names})")
        raise ModelError(
            f"{source}: not a detector (its output is {', '.join(kinds)}); netspec detect "
            f"takes a model whose output is {' or '.join(_outputs())}",
            hint="make a window classifier a detector with `netspec convert RUN "
            "--fully-convolutional -o fcn.onnx`",
        )
    decoder = DECODERS.get(decoding.decoder)
    if decoder is None:
        raise ModelError(
            f"{source}: its decoding names the decoder '{decoding.decoder}', which this netspec "
            f"does not have (it has {', '.join(DECODERS)})",
            hint="a newer netspec may read it",
        )
    if decoder.outputs != kinds:
        raise ModelError(
            f"{source}: not a detector of its kind (its output is {', '.join(kinds)}; its "
            f"decoder {decoder.name} reads {' and '.join(decoder.outputs)})"
        )
    return Detector(decoder, decoder.read(decoding.params, info, source))


def _outputs() -> list[str]:
    """What the decoders read, each once: `boxes`, `class_map`."""
    return list(dict.fromkeys(" and ".join(d.outputs) for d in DECODERS.values()))


def detect(model: Model, image: FloatArray, options: DetectOptions) -> Detections:
    """The boxes in one model-ready image (1, C, H, W), by the decoder the model names."""
    return detector(model.info, str(model.path)).decode(model, image, options)
