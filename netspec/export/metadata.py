"""The netspec facts of an export that come from the compiled network: what each output
means and the class labels a dataset implies. The file format is `netspec.artifact`.
"""

from __future__ import annotations

from typing import get_args

from netspec.artifact import OutputKind
from netspec.ir import Graph
from netspec.ops import REGISTRY

_KINDS: dict[str, OutputKind] = {k: k for k in get_args(OutputKind)}


def output_kind(graph: Graph, output: str) -> OutputKind:
    """What an output's numbers mean: the registry's `output` fact of its last operation,
    looking through those that pass their input's meaning on (identity, dropout, flatten).

    Plain logits when only pass-through operations stand between it and a graph input.
    """
    nodes = {n.name: n for n in graph.nodes}
    node = nodes[output]
    meaning = REGISTRY[node.op].output
    while meaning == "pass" and node.inputs and node.inputs[0] in nodes:
        node = nodes[node.inputs[0]]
        meaning = REGISTRY[node.op].output
    return _KINDS.get(meaning, "logits")


def default_labels(dataset: str | None, n_classes: int) -> tuple[str, ...] | None:
    """Class names when the training set implies them: MNIST's are its digits."""
    if dataset == "mnist" and n_classes == 10:
        return tuple(str(d) for d in range(10))
    return None
