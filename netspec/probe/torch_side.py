"""Every layer's output from the PyTorch module of a spec: forward hooks
(`netspec.export.layers.Taps`) on `netspec.lower.to_torch`'s module, with a run's trained
weights or fresh ones drawn from a fixed seed (or none at all: fixed kernels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from netspec.compiler import Compiled
from netspec.errors import UsageError
from netspec.export.layers import Taps, owner
from netspec.lower import Network, to_torch
from netspec.lower.weights import load_weights
from netspec.text import first_line

SEED = 0  # an untrained spec's weights: the same pictures every time

Arrays = dict[str, npt.NDArray[np.float32]]


def build_network(compiled: Compiled, weights: Path | None) -> Network:
    """The spec's module in eval mode: `weights` loaded, else initialized from SEED."""
    torch.manual_seed(SEED)
    try:
        network = to_torch(compiled)
    except NotImplementedError as e:
        raise UsageError(f"{compiled.name}: cannot build its PyTorch module: {e}") from None
    except (ValueError, TypeError, RuntimeError) as e:
        raise UsageError(
            f"{compiled.name}: cannot build its PyTorch module: {first_line(e)}"
        ) from None
    if weights is not None:
        load_weights(weights, network)
    return network.eval()


class TorchLayers:
    """Runs the network and returns every layer's output, batch first, as float32 arrays."""

    backend = "torch"

    def __init__(self, compiled: Compiled, weights: Path | None, threads: int | None) -> None:
        if threads is not None:
            torch.set_num_threads(threads)  # torch's count is the whole process's
        self.network = build_network(compiled, weights)
        self.inputs = len(compiled.graph.inputs)
        self._taps = Taps(self.network, compiled.graph)
        self.graph = compiled.graph

    def kernels(self, layer: str) -> npt.NDArray[np.float32] | None:
        """A Conv2d's weight `(out, in, kh, kw)`, else None."""
        module = self.network.get_submodule(owner(self.graph, self.graph.node(layer)))
        if not isinstance(module, torch.nn.Conv2d):
            return None
        return module.weight.detach().float().numpy().copy()

    def __call__(self, x: npt.NDArray[np.float32]) -> Arrays:
        tensor = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        with torch.inference_mode():
            _, layers = self._taps(*[tensor] * self.inputs)
        return {
            name: value.detach().float().numpy().copy()
            for name, value in layers.items()
            if isinstance(value, torch.Tensor)
        }
