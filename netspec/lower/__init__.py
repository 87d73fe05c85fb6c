"""Lowering: a checked spec becomes a trainable `torch.nn.Module` (or its Python source).

`to_torch(compiled)` builds the module; `netspec.lower.emit.emit_python` writes the same
network as a standalone PyTorch file. Both read one description per node (a `Lowered`,
netspec.lower.lowered), made by the operation's builder in `BUILDERS`: what `discover`
collects from the ``BUILDERS`` of every module of this package (netspec.lower.builders for
most operations; a head's beside its modules, as netspec.lower.ssd), so that an operation's
torch half is one module that nothing lists.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TYPE_CHECKING

from torch import nn

from netspec.ir import Shape
from netspec.lower.init import init_weights
from netspec.lower.lowered import Builder, Lowered
from netspec.lower.module import Network, assemble
from netspec.lower.roi import per_region
from netspec.ops import REGISTRY

if TYPE_CHECKING:
    from netspec.compiler import Compiled


def discover() -> dict[str, Builder]:
    """Every builder of every module of this package (its ``BUILDERS``), by operation name;
    the modules imported in the order of their names."""
    found: dict[str, Builder] = {}
    for name in sorted(info.name for info in pkgutil.iter_modules(__path__, f"{__name__}.")):
        builders: dict[str, Builder] = getattr(importlib.import_module(name), "BUILDERS", {})
        twice = sorted(set(found) & set(builders))
        assert not twice, f"operations built twice: {twice}"
        found.update(builders)
    return found


BUILDERS: dict[str, Builder] = discover()


def lowerings(compiled: Compiled) -> dict[str, Lowered]:
    """Each node's lowering, from its parameters and its inferred input and output shapes."""
    graph = compiled.graph
    shapes: dict[str, Shape] = {i.name: i.shape for i in graph.inputs}
    shapes.update((layer.name, layer.shape) for layer in compiled.layers)
    out: dict[str, Lowered] = {}
    for node in graph.nodes:
        builder = BUILDERS.get(node.op)
        if builder is None:
            raise NotImplementedError(f"operation '{node.op}' has no PyTorch builder")
        layer = compiled.inferred.layer(node.name)
        params = node.params if layer.placed is None else layer.placed
        ins, shape = [shapes[i] for i in node.inputs], shapes[node.name]
        if layer.per_region:  # built for one region, applied to each (netspec.passes.regions)
            one = builder(params, [s[1:] for s in ins], shape[1:])
            # an elementwise op takes the regions' axis as it is, unless its weights are per
            # channel (batchnorm): those read the channels at axis 1, so regions are folded
            opdef = REGISTRY[node.op]
            each = opdef.locality_for(node.params) == "elementwise" and not opdef.weighted
            out[node.name] = one if each else per_region(one, layer.regions)
        else:
            out[node.name] = builder(params, ins, shape)
    return out


def to_torch(compiled: Compiled) -> Network:
    """The compiled network as a module: PyTorch's initialization unless the spec says `init=`."""
    graph = compiled.graph
    lowered = lowerings(compiled)
    modules: dict[str, nn.Module] = {}
    for node in graph.nodes:
        if node.shares is not None:
            modules[node.name] = modules[node.shares]
            continue
        module = lowered[node.name].build()
        init_weights(module, lowered[node.name].init)
        modules[node.name] = module
    flattens = {name for name, low in lowered.items() if low.flatten}
    return assemble(graph, modules, flattens)


__all__ = ["BUILDERS", "Network", "discover", "lowerings", "to_torch"]
