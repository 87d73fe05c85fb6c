"""Layer outputs as the page draws them: each map quantized to 16 bits over its layer's
range (one shared colour scale per layer, as a colour legend needs), base64 encoded.

Sixteen bits keep a hovered unit's value to about 1/65535 of the layer's range, so the
page shows real values, while every map stays two bytes per unit on the wire.

Every answer also carries each layer's summary, the mean of each of its maps: the page's
overview of a large network draws one strip per layer from these, a few thousand values
where ResNet-18's maps at 224x224 are 8.6 million, and asks for a layer's maps only when
its detail is opened.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from netspec.probe import LayerView, Probe

LEVELS = 65535  # the largest 16-bit code: a layer's maximum


def encode(values: npt.NDArray[Any]) -> dict[str, Any]:
    """One sample's output of a layer (batch axis removed): shape, finite range, the
    number of non-finite values (drawn at the minimum) and the codes as base64 of
    little-endian uint16, ``round((v - min) / (max - min) * 65535)``."""
    x = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(x)
    low = float(x[finite].min()) if finite.any() else 0.0
    high = float(x[finite].max()) if finite.any() else 0.0
    span = high - low
    scaled = (np.where(finite, x, low) - low) / span if span > 0 else np.zeros_like(x)
    codes = np.rint(scaled * LEVELS).astype("<u2")
    return {
        "shape": list(x.shape),
        "min": low,
        "max": high,
        "nonfinite": int(x.size - finite.sum()),
        "codes": base64.b64encode(codes.tobytes()).decode("ascii"),
    }


def summary(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """One sample's output of a layer as one value per map: the mean of each map of a
    ``(C, H, W)`` or ``(C, L)`` output, a ``(C, 1, 1)`` or vector output as it is.

    >>> summary(np.arange(8.0).reshape(2, 2, 2)).tolist()
    [1.5, 5.5]
    >>> summary(np.array([3.0, -1.0])).tolist()
    [3.0, -1.0]
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim < 2:
        return x.reshape(-1)
    return np.asarray(x.reshape(x.shape[0], -1).mean(axis=1), dtype=np.float64)


def probabilities(probe: Probe, outputs: Mapping[str, npt.NDArray[Any]]) -> list[float] | None:
    """The class probabilities of the first sample of ``outputs`` as the output's kind
    reads them (logits, probabilities, RBF distances); None for a network without classes
    or whose scores are not finite."""
    scores = probe.probabilities(outputs)
    if scores is None or not np.isfinite(scores[0]).all():
        return None
    return [float(v) for v in np.asarray(scores[0]).reshape(-1)]


def layer_json(layer: LayerView) -> dict[str, Any]:
    """What the page shows of a layer besides its maps: the row of `netspec compile`'s
    table, the receptive field per spatial axis, and the spec line that made it."""
    return {
        "name": layer.name,
        "op": layer.op,
        "shape": list(layer.shape),
        "rf": None
        if layer.rf_size is None
        else {
            "size": list(layer.rf_size),
            "jump": list(layer.rf_jump or ()),
            "start": list(layer.rf_start or ()),
        },
        "params": layer.params,
        "macs": layer.macs,
        "activation_of": layer.activation_of,
        "spec": None
        if layer.line is None
        else {"file": layer.file, "line": layer.line, "col": layer.col, "text": layer.text},
    }


def model_json(probe: Probe, title: str, gallery: bool, sample: str) -> dict[str, Any]:
    """GET /api/model: everything about the network that does not depend on the input,
    and ``sample``, the dataset's word for one input ("digit", "garment", "image")."""
    return {
        "title": title,
        "input_shape": list(probe.input_shape),
        "classes": None if probe.classes is None else list(probe.classes),
        "layers": [layer_json(layer) for layer in probe.layers],
        "digits": gallery,
        "sample": sample,
    }


def run_json(
    probe: Probe,
    prepared: npt.NDArray[Any],
    outputs: Mapping[str, npt.NDArray[Any]],
    layers: Sequence[str],
) -> dict[str, Any]:
    """POST /api/run: the input as the network sees it, the maps of ``layers``, every
    layer's `summary` (its maps' means), and the class probabilities."""
    return {
        "input": encode(prepared[0]),
        "layers": {name: encode(outputs[name][0]) for name in layers},
        "means": {view.name: encode(summary(outputs[view.name][0])) for view in probe.layers},
        "probabilities": probabilities(probe, outputs),
    }


def predicted(probe: Probe, outputs: Mapping[str, npt.NDArray[Any]]) -> npt.NDArray[np.int64]:
    """Each sample's most probable class, from `run`'s outputs for a batch of a classifier."""
    scores = probe.probabilities(outputs)
    assert scores is not None, "predicted() is for classifiers"
    return np.asarray(np.asarray(scores).reshape(len(scores), -1).argmax(axis=1), dtype=np.int64)


def pixels_json(image: npt.NDArray[np.uint8], extra: Sequence[tuple[str, Any]] = ()) -> Any:
    """An image ``(H, W, C)`` uint8 for the page's drawing canvas, as base64 of its bytes."""
    h, w, c = image.shape
    return {
        "height": h,
        "width": w,
        "channels": c,
        "pixels": base64.b64encode(np.ascontiguousarray(image).tobytes()).decode("ascii"),
        **dict(extra),
    }
