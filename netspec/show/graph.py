"""`graph.svg`: the network as Graphviz draws it (the `graphviz` package and Debian's `dot`):
a node per input and per layer with its name, operation, output shape and receptive field;
an edge per tensor read, so branches and merges show as they are; a block's layers in a box
named by its path (`layer3.1`); a dashed edge from a layer to the one whose weights it uses.
"""

from __future__ import annotations

from pathlib import Path

from netspec.compiler import Compiled
from netspec.errors import UsageError
from netspec.fileio import write_bytes
from netspec.report import rf_text
from netspec.text import fmt_shape


def graph_source(compiled: Compiled) -> str:
    """The DOT text of the network."""
    import graphviz

    dot = graphviz.Digraph(compiled.name, graph_attr={"rankdir": "TB", "fontsize": "10"})
    dot.attr("node", shape="box", style="rounded,filled", fillcolor="#f4f4f4", fontsize="9")
    for graph_input in compiled.graph.inputs:
        dot.node(
            graph_input.name,
            f"{graph_input.name}\n{fmt_shape(graph_input.shape)}",
            fillcolor="#dde8ff",
        )
    clusters: dict[str, list[str]] = {}
    for layer in compiled.layers:
        label = f"{layer.name}\n{layer.op} {fmt_shape(layer.shape)}\nRF {rf_text(layer)}"
        prefix = layer.name.rpartition(".")[0]
        clusters.setdefault(prefix, []).append(layer.name)
        if not prefix:
            dot.node(layer.name, label)
    for prefix, names in clusters.items():
        if not prefix:
            continue
        with dot.subgraph(name=f"cluster_{prefix}") as block:
            block.attr(label=prefix, style="dashed", fontsize="9")
            for name in names:
                layer = compiled.inferred.layer(name)
                block.node(
                    name, f"{name}\n{layer.op} {fmt_shape(layer.shape)}\nRF {rf_text(layer)}"
                )
    for node in compiled.graph.nodes:
        for source in node.inputs:
            dot.edge(source, node.name)
        if node.shares is not None:
            dot.edge(node.shares, node.name, style="dashed", label="same weights", fontsize="8")
    return str(dot.source)


def write_graph(compiled: Compiled, path: Path) -> Path:
    """Render with `dot` to SVG and write it atomically; a missing `dot` is a clear error."""
    import graphviz

    try:
        svg = graphviz.Source(graph_source(compiled)).pipe(format="svg")
    except graphviz.ExecutableNotFound:
        raise UsageError(
            "graph.svg needs Graphviz's `dot` program", hint="install it: apt-get install graphviz"
        ) from None
    write_bytes(path, svg)
    return path
