"""What the compiler knows of each layer, as the pictures and the page need it: shape,
receptive field, the spec line that made it, cost, and which layer an activation rectifies.

Nothing here imports torch or ONNX: a view is made from a `Compiled` alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from netspec.compiler import Compiled
from netspec.diagnostics import display_path
from netspec.errors import UsageError
from netspec.ops import REGISTRY
from netspec.passes.infer import Layer


@dataclass(frozen=True)
class LayerView:
    """One layer: its output shape (no batch axis), receptive field along each spatial axis
    as `netspec compile` reports it (None for a layer that sees the whole input, or a region
    that the data chooses: after a RoI pooling), where the spec made it, its trainable
    parameters and multiply-adds, and for an activation the layer whose maps it rectifies."""

    name: str
    op: str
    shape: tuple[int, ...]
    rf_size: tuple[float, ...] | None
    rf_jump: tuple[float, ...] | None
    rf_start: tuple[float, ...] | None
    file: str | None
    line: int | None
    col: int | None
    text: str | None
    params: int
    macs: int
    activation_of: str | None
    fixed: int = 0  # constant values from the spec (fixed kernels, prototypes)
    inputs: tuple[str, ...] = ()  # the layers (or network inputs) it reads

    @property
    def spatial(self) -> bool:
        """Feature maps (C x H x W) with a receptive field: what `maps-LAYER.png` draws."""
        return len(self.shape) == 3 and self.rf_size is not None and len(self.rf_size) == 2

    @property
    def where(self) -> str | None:
        """`specs/lenet.net:8:5`, or None when the layer has no place in a file."""
        if self.file is None or self.line is None:
            return None
        return f"{self.file}:{self.line}:{self.col or 1}"


def _num(x: float) -> float:
    return int(x) if float(x).is_integer() else float(x)


def _shape(layer: Layer) -> tuple[int, ...]:
    if not all(isinstance(d, int) for d in layer.shape):
        raise UsageError(
            f"layer '{layer.name}' has symbolic size {'x'.join(map(str, layer.shape))}",
            hint="bind the network's sizes, e.g. --set H=64 --set W=64",
        )
    return tuple(int(d) for d in layer.shape)


def layer_views(compiled: Compiled) -> tuple[LayerView, ...]:
    """A view of every layer of `compiled` (its sizes bound), in network order."""
    sources = compiled.program.sources
    layers = {layer.name for layer in compiled.layers}
    views = []
    for layer in compiled.layers:
        node = compiled.graph.node(layer.name)
        rf = layer.rf
        unplaced = rf.whole or rf.region  # the whole input, or a region the data chooses
        span = layer.span
        known = span.line > 0
        source_line = sources.line(span.file, span.line) if known else None
        first = node.inputs[0] if node.inputs else None
        views.append(
            LayerView(
                name=layer.name,
                op=layer.op,
                shape=_shape(layer),
                rf_size=None if unplaced else tuple(_num(rf.size[i]) for i in rf.axes),
                rf_jump=None if unplaced else tuple(_num(rf.jump[i]) for i in rf.axes),
                rf_start=None if unplaced else tuple(float(rf.start[i]) for i in rf.axes),
                file=display_path(span.file) if known else None,
                line=span.line if known else None,
                col=span.col if known else None,
                text=source_line.strip() if source_line is not None else None,
                params=layer.params,
                macs=layer.macs or 0,
                activation_of=first if REGISTRY[layer.op].activation and first in layers else None,
                fixed=layer.fixed,
                inputs=node.inputs,
            )
        )
    return tuple(views)
