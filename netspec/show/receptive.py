"""A unit's receptive field two ways: the box the compiler's size, jump and start give, and
where the gradient of that unit reaches the input. The two must agree.

The static box of unit (y, x): its centre is `start + index * jump` along each axis, in
input pixels whose centres sit at i + 0.5; it spans `size` pixels about that centre,
clipped to the input.

The empirical one is measured on a twin of the network with every path open, because the
trained network's own gradient can stop short of the field (a max-pool passes it to one
input of each window, a ReLU off for this input passes none): the twin keeps each
operation that moves or mixes positions (convolutions, pools, upsampling, crops, merges)
with positive weights, turns a max (pool or merge) into a sum over the same windows, and
drops what acts on one position alone (activations, normalizations: the compiler gives
those their input's field). Run in float64 on positive inputs, nothing cancels, so the
gradient is non-zero exactly where the unit reads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from netspec.compiler import Compiled
from netspec.export.layers import Taps, owner
from netspec.ir import Node
from netspec.lower import Network, lowerings
from netspec.lower.layers import Add
from netspec.lower.module import assemble
from netspec.ops import REGISTRY
from netspec.probe import LayerView


@dataclass(frozen=True)
class Box:
    """Input rows `top..bottom` and columns `left..right`, inclusive."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.bottom - self.top + 1, self.right - self.left + 1)


def _span(start: float, jump: float, size: float, index: int, extent: int) -> tuple[int, int]:
    centre = start + index * jump
    first = math.ceil(centre - size / 2 - 0.5)
    last = math.ceil(centre + size / 2 - 0.5) - 1
    return max(first, 0), min(last, extent - 1)


def static_box(view: LayerView, y: int, x: int, height: int, width: int) -> Box | None:
    """The box the compiler's receptive field gives unit (y, x) of `view`, clipped to an
    input of `height` x `width`; None for a layer that sees the whole input."""
    if view.rf_size is None or view.rf_jump is None or view.rf_start is None:
        return None
    if len(view.rf_size) == 1:  # a signal: one axis, along W
        left, right = _span(view.rf_start[0], view.rf_jump[0], view.rf_size[0], x, width)
        return Box(0, left, 0, right)
    top, bottom = _span(view.rf_start[0], view.rf_jump[0], view.rf_size[0], y, height)
    left, right = _span(view.rf_start[1], view.rf_jump[1], view.rf_size[1], x, width)
    return Box(top, left, bottom, right)


def _pair(value: int | tuple[int, ...], one_d: bool, fill: int) -> tuple[int, int]:
    """A pool's size as (H, W): a signal's along W, `fill` along H."""
    if one_d:
        return (fill, value if isinstance(value, int) else value[0])
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class WindowSum(nn.Module):
    """A max-pool's windows summed instead (a ones kernel per map), cropped to its size."""

    def __init__(self, pool: nn.MaxPool1d | nn.MaxPool2d, out: Sequence[int]) -> None:
        super().__init__()
        self.one_d = isinstance(pool, nn.MaxPool1d)
        self.kernel = _pair(pool.kernel_size, self.one_d, 1)
        self.stride = _pair(pool.stride, self.one_d, 1)
        self.padding = _pair(pool.padding, self.one_d, 0)
        self.dilation = _pair(pool.dilation, self.one_d, 1)
        self.out = (1, int(out[-1])) if self.one_d else (int(out[-2]), int(out[-1]))

    def forward(self, x: Tensor) -> Tensor:
        if self.one_d:
            x = x.unsqueeze(2)
        channels = x.shape[1]
        ones = x.new_ones(channels, 1, *self.kernel)
        # the far sides padded by a window more: a ceil-mode window there is kept, then cropped
        (kh, kw), (sh, sw) = self.kernel, self.stride
        x = F.pad(x, (0, sw * kw, 0, sh * kh))
        y = F.conv2d(x, ones, None, self.stride, self.padding, self.dilation, channels)
        y = y[:, :, : self.out[0], : self.out[1]]
        return y[:, :, 0] if self.one_d else y


def _pointwise(compiled: Compiled, node: Node) -> bool:
    """One input, same shape, same receptive field: acts on each position alone."""
    if len(node.inputs) != 1 or node.inputs[0] not in {la.name for la in compiled.layers}:
        return False
    layer, source = compiled.inferred.layer(node.name), compiled.inferred.layer(node.inputs[0])
    return layer.shape == source.shape and layer.rf == source.rf


def _opened(compiled: Compiled, node: Node, module: nn.Module) -> nn.Module:
    """`module` as the twin runs it."""
    if REGISTRY[node.op].selects:
        return _summing(compiled, node, module)
    if _pointwise(compiled, node):
        return nn.Identity()
    return module


def _summing(compiled: Compiled, node: Node, module: nn.Module) -> nn.Module:
    """A max (`OpDef.selects`) as a sum: a max-pool's over the same windows, a max merge's
    over its inputs."""
    if isinstance(module, nn.MaxPool1d | nn.MaxPool2d):
        shape = compiled.inferred.layer(node.name).shape
        return WindowSum(module, [int(d) for d in shape])
    if isinstance(module, nn.AdaptiveMaxPool2d):
        return nn.AdaptiveAvgPool2d(module.output_size)
    if isinstance(module, nn.AdaptiveMaxPool1d):
        return nn.AdaptiveAvgPool1d(module.output_size)
    assert REGISTRY[node.op].merges, f"no sum for '{node.op}' ({type(module).__name__})"
    return Add()


def _positive(network: nn.Module, seed: int) -> None:
    """Every weight and constant drawn from [0.5, 1.5); running statistics made neutral."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*network.named_parameters(), *network.named_buffers()]:
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_mean"):
                tensor.zero_()
            elif name.endswith("running_var"):
                tensor.fill_(1.0)
            else:
                values = torch.rand(tensor.shape, generator=generator, dtype=torch.float64)
                tensor.copy_(values + 0.5)


def open_twin(compiled: Compiled, seed: int = 0) -> Network:
    """The network with every path open (module docstring), in float64, eval mode."""
    graph = compiled.graph
    lowered = lowerings(compiled)
    modules: dict[str, nn.Module] = {}
    for node in graph.nodes:
        if node.shares is not None:
            modules[node.name] = modules[owner(graph, node)]
            continue
        modules[node.name] = _opened(compiled, node, lowered[node.name].build())
    flattens = {name for name, low in lowered.items() if low.flatten}
    network = assemble(graph, modules, flattens).double().eval()
    _positive(network, seed)
    return network


@dataclass(frozen=True)
class Unit:
    """One unit: layer, channel and position (y is 0 along a signal)."""

    layer: str
    channel: int
    y: int
    x: int


def empirical_boxes(
    compiled: Compiled, units: Sequence[Unit], twin: Network | None = None
) -> list[Box | None]:
    """Where the gradient of each unit reaches the input (any input, any channel), as the
    bounding box of those pixels; one forward and one backward for them all, a sample each.
    None where it reaches no pixel."""
    if not units:
        return []
    twin = twin if twin is not None else open_twin(compiled)
    generator = torch.Generator().manual_seed(1)
    inputs = []
    for graph_input in compiled.graph.inputs:
        shape = (len(units), *(int(d) for d in graph_input.shape))
        x = torch.rand(shape, generator=generator, dtype=torch.float64) + 0.5
        inputs.append(x.requires_grad_(True))
    taps = Taps(twin, compiled.graph)
    try:
        _, layers = taps(*inputs)
    finally:
        taps.close()
    total = torch.stack([_unit_value(layers[u.layer], k, u) for k, u in enumerate(units)]).sum()
    grads = torch.autograd.grad(total, inputs, allow_unused=True)
    reached = sum((g.abs() for g in grads if g is not None), torch.zeros(()))
    return [_bounds(reached[k]) for k in range(len(units))]


def _unit_value(output: Tensor, sample: int, unit: Unit) -> Tensor:
    """The layer's units at the unit's position, every channel: the compiler's field is the
    position's (a concat's is its widest branch's, whichever channel the unit is)."""
    if output.dim() == 4:
        return output[sample, :, unit.y, unit.x].sum()
    if output.dim() == 3:
        return output[sample, :, unit.x].sum()
    return output[sample].sum()


def _bounds(reached: Tensor) -> Box | None:
    """The bounding box of the non-zero pixels of one sample's `(C, H, W)` (or `(C, L)`)
    gradient."""
    mask = reached.ne(0).any(dim=0)
    if mask.dim() == 1:
        mask = mask.unsqueeze(0)
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if len(rows) == 0:
        return None
    return Box(int(rows[0]), int(cols[0]), int(rows[-1]), int(cols[-1]))
