"""The netspec facts of an export that come from the compiled network: what each output
means and the class labels a dataset implies. The file format is `netspec.artifact`.
"""

from __future__ import annotations

from netspec.artifact import OutputKind
from netspec.ir import Graph

# operations after which an output's meaning is decided by what came before
_PASS_THROUGH = frozenset({"identity", "dropout", "flatten"})
_KIND_OF_OP: dict[str, OutputKind] = {
    "rbf": "rbf_distances",
    "softmax": "probabilities",
    "sigmoid": "sigmoid",
}


def output_kind(graph: Graph, output: str) -> OutputKind:
    """What an output's numbers mean, from the last operation that decides it."""
    name = output
    while True:
        node = graph.node(name)
        if node.op in _PASS_THROUGH and node.inputs and node.inputs[0] not in _input_names(graph):
            name = node.inputs[0]
            continue
        return _KIND_OF_OP.get(node.op, "logits")


def _input_names(graph: Graph) -> set[str]:
    return {i.name for i in graph.inputs}


def default_labels(dataset: str | None, n_classes: int) -> tuple[str, ...] | None:
    """Class names when the training set implies them: MNIST's are its digits."""
    if dataset == "mnist" and n_classes == 10:
        return tuple(str(d) for d in range(10))
    return None
