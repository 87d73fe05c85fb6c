"""ONNX Runtime sessions: which execution provider runs a model, and the model's facts.

`auto` prefers TensorRT, then CUDA, then the CPU, among the providers the installed
ONNX Runtime build has (`onnxruntime-gpu` has the GPU ones; the default
`onnxruntime` only the CPU). Asking for a provider the build lacks is a usage
error that names the ones it has.

The shapes a file's metadata declares are checked (artifact.check_shape) before
anything is allocated for them: a file is data someone may have crafted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from netspec.artifact import InputInfo, ModelInfo, OutputInfo, check_shape, from_props
from netspec.errors import MetadataError, ModelError, ProviderError
from netspec.text import UNBOUND_SIZE, bound_shape, first_line, fmt_shape

if TYPE_CHECKING:
    import onnxruntime as ort

PROVIDERS: dict[str, str] = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
AUTO_ORDER = ("tensorrt", "cuda", "cpu")
MAX_CALL_VALUES = 2**28  # values in one call's batch of one input (1 GiB of float32)


def sample_values(info: InputInfo, unbound: int = UNBOUND_SIZE) -> int:
    """Values in one sample of `info`, symbolic sizes counted as `unbound`.

    >>> sample_values(InputInfo("image", (3, "H", "W")), unbound=32)
    3072
    """
    return math.prod(bound_shape(info.shape, unbound))


def check_declared(info: ModelInfo, source: str) -> None:
    """Refuse input shapes no netspec export declares (artifact.check_shape: sizes that are
    not positive, or a sample of more than MAX_ELEMENTS values, which `run` and `bench`
    would allocate), whatever made `info`."""
    for i in info.inputs:
        try:
            check_shape(i.shape)
        except ValueError as e:
            raise MetadataError(
                f"{source}: input '{i.name}' declares {fmt_shape(i.shape)} per sample; {e}"
            ) from None


def check_graph(info: ModelInfo, session: ort.InferenceSession, source: str) -> None:
    """Refuse metadata that disagrees with the graph: another number of inputs or outputs,
    another fixed size, or another output name. Inputs would be fitted to the one and fail
    in the other, and each output is read as the kind its metadata gives it, in the graph's
    order. An input's name is not compared: inputs are fed in the graph's order, and the
    exporter renames an input that is also an output (`image` to `image.1`)."""
    _agree("input", info.inputs, session.get_inputs(), source)
    _agree("output", info.outputs, session.get_outputs(), source)


def _agree(
    what: str,
    declared: Sequence[InputInfo | OutputInfo],
    graph: Sequence[Any],
    source: str,
) -> None:
    """The metadata's `declared` inputs (or outputs) against the graph's, in order: their
    number, an output's name, and per-sample sizes (axis 0 is the batch; a size either side
    leaves free is not compared, nor a shape either side does not record)."""
    if len(graph) != len(declared):
        raise MetadataError(
            f"{source}: the metadata declares {len(declared)} {what}s; the graph has {len(graph)}"
        )
    for mine, actual in zip(declared, graph, strict=True):
        if what == "output" and mine.name != actual.name:
            raise MetadataError(
                f"{source}: the metadata names {what} '{mine.name}' where the graph has "
                f"'{actual.name}'"
            )
        sizes = list(actual.shape or ())[1:]  # the graph's per-sample sizes
        if mine.shape is None or not actual.shape:
            continue
        if len(sizes) != len(mine.shape) or any(
            isinstance(d, int) and isinstance(g, int) and d != g
            for d, g in zip(mine.shape, sizes, strict=True)
        ):
            graph_shape = fmt_shape(tuple(g if isinstance(g, int) else "?" for g in sizes))
            verb = "takes" if what == "input" else "gives"
            raise MetadataError(
                f"{source}: the metadata declares {what} '{mine.name}' as "
                f"{fmt_shape(mine.shape)} per sample; the graph {verb} {graph_shape}"
            )


def choose_providers(choice: str, available: list[str]) -> list[str]:
    """The provider list for a session, best first, always ending with the CPU as fallback.

    >>> choose_providers("auto", ["CUDAExecutionProvider", "CPUExecutionProvider"])
    ['CUDAExecutionProvider', 'CPUExecutionProvider']
    >>> choose_providers("auto", ["CPUExecutionProvider"])
    ['CPUExecutionProvider']
    """
    if choice == "auto":
        picked = [PROVIDERS[c] for c in AUTO_ORDER if PROVIDERS[c] in available]
        return picked or ["CPUExecutionProvider"]
    wanted = PROVIDERS.get(choice)
    if wanted is None:
        raise ProviderError(
            f"unknown provider '{choice}'; expected one of auto, cpu, cuda, tensorrt"
        )
    if wanted not in available:
        raise ProviderError(
            f"--provider {choice}: this ONNX Runtime has no {wanted} (available: "
            f"{', '.join(available)}); install the GPU build with `pip uninstall onnxruntime "
            '&& pip install "netspec[gpu]"`, or use --provider auto'
        )
    return list(dict.fromkeys([wanted, "CPUExecutionProvider"]))


def session_options(threads: int | None = None, spin: bool = True) -> ort.SessionOptions:
    """All graph optimizations, sequential execution, `threads` intra-op threads (0: ORT's).

    `spin=False` stops idle worker threads from spinning between calls: slower back-to-back
    calls, but fair to another engine timed in between (PyTorch in `netspec bench`).

    QDQ propagation is off: in an int8 file it would move the quantization after an fp32
    MaxPool up before it, and pool uint8 outside the NHWC layout, about ten times slower
    (netspec.export.quantize; docs/benchmarks.md, "int8 on this CPU"). fp32 files have no
    quantization for it to move."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3  # errors only: no chatter about optional providers
    options.add_session_config_entry(
        "optimization.disable_specified_optimizers", "QDQPropagationTransformer"
    )
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


@dataclass
class Model:
    """An ONNX Runtime session on a netspec export, with the facts its metadata gives."""

    path: Path
    session: ort.InferenceSession
    info: ModelInfo
    provider: str  # the provider that runs the model
    input_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, *arrays: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
        """Run on one batch per input, in the model's input order."""
        outputs: list[Any] = self.session.run(
            None, dict(zip(self.input_names, arrays, strict=True))
        )
        return outputs


def open_model(
    path: Path, provider: str = "auto", threads: int | None = None, spin: bool = True
) -> Model:
    """Open `path` on the chosen provider; raise ModelError or ProviderError naming the file."""
    import onnxruntime as ort

    providers = choose_providers(provider, ort.get_available_providers())
    if not path.is_file():
        raise ModelError(f"{path}: no such file; expected an ONNX model")
    try:
        options = session_options(threads, spin)
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as e:  # ORT raises its own Fail/InvalidProtobuf/RuntimeException types
        first = first_line(e)
        raise ModelError(
            f"{path}: not a valid ONNX model ({first}); expected a file written by `netspec export`"
        ) from None
    try:
        info = from_props(session.get_modelmeta().custom_metadata_map, str(path))
        check_declared(info, str(path))
        check_graph(info, session, str(path))
    except MetadataError as e:
        raise ModelError(str(e)) from None
    return Model(path, session, info, session.get_providers()[0])
