"""What an exported ONNX file says about itself, in its `metadata_props`.

Everything `netspec run` needs rides in the file: the spec text, the network's
name, each input's shape and normalization, the class labels and what the
output means. Values are strings (ONNX's rule); lists and records are JSON.
Export writes it and the runtime reads it; this module imports neither torch nor
onnx, so `run` can read it cheaply from an ONNX Runtime session's
`custom_metadata_map`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Literal

from netspec.errors import MetadataError

OutputKind = Literal["logits", "rbf_distances", "probabilities", "sigmoid"]
Precision = Literal["fp32", "fp16", "int8"]


@dataclass(frozen=True)
class InputInfo:
    """One model input: its per-sample shape and the normalization applied to pixels in [0, 1]."""

    name: str
    shape: tuple[int | str, ...]
    mean: float = 0.0
    std: float = 1.0


@dataclass(frozen=True)
class OutputInfo:
    name: str
    kind: OutputKind


@dataclass(frozen=True)
class ModelInfo:
    """The netspec facts of an exported model."""

    network: str
    spec: str
    version: str
    inputs: tuple[InputInfo, ...]
    outputs: tuple[OutputInfo, ...]
    labels: tuple[str, ...] | None = None
    precision: Precision = "fp32"
    weights: dict[str, str] = field(default_factory=dict)  # torch name -> initializer name
    sizes: dict[str, int] = field(default_factory=dict)  # symbolic sizes bound at export (--set)

    def to_props(self) -> dict[str, str]:
        """The `metadata_props` entries, all strings."""
        return {
            "netspec_version": self.version,
            "network": self.network,
            "spec": self.spec,
            "inputs": json.dumps([asdict(i) for i in self.inputs]),
            "outputs": json.dumps([asdict(o) for o in self.outputs]),
            "output_kind": self.outputs[0].kind if self.outputs else "logits",
            "labels": json.dumps(list(self.labels) if self.labels is not None else None),
            "precision": self.precision,
            "weights": json.dumps(self.weights),
            "sizes": json.dumps(self.sizes),
        }


def from_props(props: Mapping[str, str], source: str) -> ModelInfo:
    """Read back what `ModelInfo.to_props` wrote; raise MetadataError naming `source`."""
    missing = [k for k in ("network", "spec", "inputs", "outputs") if k not in props]
    if missing:
        raise MetadataError(
            f"{source}: not exported by netspec (no {', '.join(missing)} in its metadata); "
            "expected a file written by `netspec export` or `netspec compile -o`"
        )
    try:
        inputs = tuple(
            InputInfo(d["name"], tuple(d["shape"]), float(d["mean"]), float(d["std"]))
            for d in json.loads(props["inputs"])
        )
        outputs = tuple(OutputInfo(d["name"], d["kind"]) for d in json.loads(props["outputs"]))
        labels = json.loads(props.get("labels", "null"))
        weights = json.loads(props.get("weights", "{}"))
        sizes = {str(k): int(v) for k, v in json.loads(props.get("sizes", "{}")).items()}
    except (ValueError, KeyError, TypeError) as e:
        raise MetadataError(f"{source}: unreadable netspec metadata ({e})") from None
    precision = props.get("precision", "fp32")
    return ModelInfo(
        network=props["network"],
        spec=props["spec"],
        version=props.get("netspec_version", "?"),
        inputs=inputs,
        outputs=outputs,
        labels=tuple(str(x) for x in labels) if labels is not None else None,
        precision=precision if precision in ("fp32", "fp16", "int8") else "fp32",  # type: ignore[arg-type]
        weights={str(k): str(v) for k, v in weights.items()},
        sizes=sizes,
    )
