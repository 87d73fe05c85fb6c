"""Every layer's output, by its spec name: hooks on the lowered module, and the same names on
the exported graph's tensors.

`Taps` puts a forward hook on each layer's module of a `netspec.lower.Network`, so that one
forward records what every layer computed, under the layer's dotted name, in network order
(a shared module's uses in the order the network makes them). The probe's PyTorch side
(`netspec show`, `netspec serve` on a spec) reads layers this way.

For ONNX, export traces `WithLayers`, the network returning each layer's output too,
under the layer's name: the trace then calls that tensor after the layer (`conv1`,
`layer3.1.conv2`), not after the scope of its last operator, which is ambiguous once
blocks repeat (`/conv1_7/Conv_output_0`). Export drops those extra outputs once the graph
is clean; the names stay on the tensors, where ONNX Runtime finds them when a reader asks
for them as outputs again (netspec.probe). A layer whose output is the tensor of its input
(identity, dropout at inference) or a network output keeps no name of its own: the reader
takes that tensor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from netspec.ir import Graph, Node


def owner(graph: Graph, node: Node) -> str:
    """The node whose module `node` runs: itself, or the node its `shares` chain ends at."""
    while node.shares is not None:
        node = graph.node(node.shares)
    return node.name


class Taps:
    """Forward hooks on every layer's module of `network`; `outputs` after each forward."""

    def __init__(self, network: nn.Module, graph: Graph) -> None:
        self.network = network
        self.order = tuple(n.name for n in graph.nodes)
        self._uses: dict[int, list[str]] = {}
        modules: dict[int, nn.Module] = {}
        for node in graph.nodes:
            try:
                module = network.get_submodule(owner(graph, node))
            except AttributeError:  # a module not lowered from this graph: nothing to tap
                continue
            self._uses.setdefault(id(module), []).append(node.name)
            modules[id(module)] = module
        self._calls: dict[int, int] = {}
        self.outputs: dict[str, Any] = {}
        self._handles = [m.register_forward_hook(self._record) for m in modules.values()]

    def _record(self, module: nn.Module, args: Any, output: Any) -> None:
        uses = self._uses.get(id(module))
        if uses is None:  # a copy of the module carries this hook: not one of ours
            return
        calls = self._calls.get(id(module), 0)
        self._calls[id(module)] = calls + 1
        self.outputs[uses[calls % len(uses)]] = output

    def __call__(
        self, *inputs: Tensor, through: nn.Module | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """The network's own result (or that of `through`, a module that runs the network
        inside it), and every layer's output by name in network order."""
        self._calls.clear()
        self.outputs = {}
        result = (through or self.network)(*inputs)
        recorded = self.outputs
        self.outputs = {}
        return result, {name: recorded[name] for name in self.order if name in recorded}

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def own_tensors(
    layers: dict[str, Any], inputs: Sequence[Tensor], outputs: Sequence[Tensor]
) -> list[tuple[str, Tensor]]:
    """The layers whose output is a tensor of their own: not an input, not a network output,
    not the tensor an earlier layer already named (what identity and dropout return)."""
    seen = {id(t) for t in (*inputs, *outputs)}
    own: list[tuple[str, Tensor]] = []
    for name, value in layers.items():
        if isinstance(value, Tensor) and id(value) not in seen:
            seen.add(id(value))
            own.append((name, value))
    return own


class WithLayers(nn.Module):
    """The module, returning its outputs and then each layer's own tensor (`own_tensors`).

    `module` is the lowered network, or one that runs it inside (a detector's network and
    its decoding: then `network` is the lowered network whose layers are tapped). It holds
    the module's children as its own, under the same names, so the state_dict and with it
    every initializer name is the module's."""

    _taps: Taps
    _module: nn.Module

    def __init__(self, module: nn.Module, graph: Graph, network: nn.Module | None = None) -> None:
        super().__init__()
        self._modules = module._modules
        self.training = module.training  # export puts this mode back on the children
        # neither is a submodule: no "module." prefix on the names
        self.__dict__["_module"] = module
        self.__dict__["_taps"] = Taps(network or module, graph)

    def forward(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        result, layers = self._taps(*inputs, through=self._module)
        outputs = result if isinstance(result, tuple) else (result,)
        return (*outputs, *(t for _, t in own_tensors(layers, inputs, outputs)))

    def layer_names(self, *inputs: Tensor) -> list[str]:
        """The names of the extra outputs `forward` returns for these inputs."""
        result, layers = self._taps(*inputs, through=self._module)
        outputs = result if isinstance(result, tuple) else (result,)
        return [name for name, _ in own_tensors(layers, inputs, outputs)]

    def close(self) -> None:
        self._taps.close()
