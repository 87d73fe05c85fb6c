"""PyTorch eager on an exported file's own weights: the spec in the file's metadata
rebuilt, its initializers copied in by name. `netspec bench --vs torch` times it
against ONNX Runtime (netspec.runtime.bench), which never imports torch itself.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from netspec.artifact import ModelInfo
from netspec.errors import ModelError, NetspecError

Runner = Callable[[], object]  # a call with no arguments, as netspec.runtime.bench times it
Inputs = list[npt.NDArray[np.float32]]


def torch_engine(path: Path, info: ModelInfo, threads: int | None) -> Callable[[Inputs], Runner]:
    """What `bench --vs torch` times: the file's network in PyTorch eager on `threads`
    threads (default: PyTorch's own), as a maker of runners on given inputs."""
    module = torch_module(path, info)
    if threads:
        torch.set_num_threads(threads)
    return lambda inputs: torch_runner(module, inputs)


def torch_runner(module: torch.nn.Module, inputs: Inputs) -> Runner:
    """One inference-mode call of `module` on `inputs`, converted once."""
    tensors = [torch.from_numpy(x) for x in inputs]

    def run() -> object:
        with torch.inference_mode():
            return module(*tensors)

    return run


def torch_module(path: Path, info: ModelInfo) -> torch.nn.Module:
    """PyTorch eager on the file's weights: the spec rebuilt, initializers copied by name."""
    import onnx
    from onnx import numpy_helper

    from netspec.compiler import compile_text
    from netspec.lower import to_torch

    if info.precision == "int8" or not info.weights:
        raise ModelError(
            f"{path}: an {info.precision} file keeps no fp32 weights by name; "
            "benchmark the fp32 export with --vs torch"
        )
    try:
        sizes: dict[str, Any] = dict(info.sizes)
        compiled = compile_text(info.spec, f"{path}:spec", info.network, **sizes)
    except NetspecError as e:
        raise ModelError(f"{path}: the spec in its metadata no longer compiles ({e})") from None
    module = to_torch(compiled).eval()
    stored = {t.name: t for t in onnx.load(str(path)).graph.initializer}
    state = module.state_dict()
    for name, tensor in state.items():
        source = stored.get(info.weights.get(name, ""))
        if source is None:
            raise ModelError(f"{path}: no initializer for weight '{name}'")
        value = torch.from_numpy(numpy_helper.to_array(source).astype(np.float32))
        if value.shape != tensor.shape:
            raise ModelError(
                f"{path}: weight '{name}' is {tuple(value.shape)} in the file but "
                f"{tuple(tensor.shape)} in the spec rebuilt from its metadata"
            )
        state[name] = value
    module.load_state_dict(state)
    return module
