"""What `netspec compile` shows: one row per layer, then totals; or the same as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.table import Table

from netspec.passes.infer import Layer
from netspec.text import fmt_shape

if TYPE_CHECKING:
    from netspec.compiler import Compiled


def _count(n: int | None) -> str:
    return "?" if n is None else f"{n:,}"


def _human(n: int | None, unit: str = "") -> str:
    if n is None:
        return "?"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n}{unit}"


def _bytes(n: int | None) -> str:
    if n is None:
        return "? (symbolic size)"
    for scale, suffix in ((1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n} B"


def _num(x: float) -> int | float:
    return int(x) if float(x).is_integer() else x


def _short(x: float) -> str:
    """A receptive-field number for the table: `3`, `0.5`, `0.1667` (after an upsample)."""
    return str(int(x)) if float(x).is_integer() else f"{x:.4g}"


def rf_text(layer: Layer) -> str:
    """`5 /2`: size and jump; `all`; after a RoI pooling `bin+5 /2` (`region+5 /2` once the
    region is reduced): the region's bin, or the region, grown by the backbone's field."""
    if layer.rf.whole and not layer.rf.region:
        return "all"
    h, w = (_short(s) for s in layer.rf.size)
    jh, jw = (_short(j) for j in layer.rf.jump)
    if layer.rf.region:
        grown = f"{h}" if h == w else f"{h}x{w}"
        return f"{'region' if layer.rf.whole else 'bin'}+{grown} /{jh}"
    if layer.rf.line:  # a 1-D signal: along its one axis
        return f"{w} /{jw}"
    size = f"{h}" if h == w else f"{h}x{w}"
    jump = f"{jh}" if jh == jw else f"{jh}x{jw}"
    return f"{size} /{jump}"


def _params_text(layer: Layer) -> str:
    if layer.shared_with is not None:
        return f"shared ({layer.shared_with})"
    text = _count(layer.params) if layer.params else "-"
    if layer.fixed:
        text += f" +{layer.fixed:,} fixed"
    return text


def table(compiled: Compiled) -> Table:
    graph = compiled.graph
    ins = ", ".join(f"{i.name}: {fmt_shape(i.shape)}" for i in graph.inputs)
    t = Table(
        title=f"network {graph.name}({ins})",
        title_justify="left",
        box=None,
        header_style="bold",
        pad_edge=False,
    )
    rows = [
        (
            layer.name,
            layer.op,
            fmt_shape(layer.shape),
            rf_text(layer),
            _params_text(layer),
            _human(layer.macs),
        )
        for layer in compiled.layers
    ]
    for i, (col, justify) in enumerate(
        (
            ("layer", "left"),
            ("op", "left"),
            ("output", "left"),
            ("receptive field", "right"),
            ("params", "right"),
            ("MACs", "right"),
        )
    ):
        # A narrow console wraps the headers at their spaces; no cell is ever cut.
        keep = max([len(r[i]) for r in rows] + [len(word) for word in col.split()])
        t.add_column(col, justify=justify, min_width=keep)  # type: ignore[arg-type]
    for row in rows:
        t.add_row(*row)
    return t


def totals_text(compiled: Compiled) -> str:
    tot = compiled.totals
    lines = [
        f"layers        {tot.layers:,}",
        f"parameters    {tot.trainable_params:,} trainable"
        + (f", {tot.fixed_params:,} fixed" if tot.fixed_params else ""),
        f"multiply-adds {_count(tot.macs)} per sample ({_human(tot.macs)})",
        f"memory        {_bytes(tot.memory_per_sample)} of activations per sample (float32), "
        f"{_bytes(4 * tot.params)} of weights",
        f"outputs       {outputs_text(compiled)}",
    ]
    from netspec.kinds import detection_head

    head = detection_head(compiled)
    if head is not None:
        lines.append(f"detection     {head.text()}")
    return "\n".join(lines)


def outputs_text(compiled: Compiled) -> str:
    """`density (density.1): map 1x28x28, cls: logits 10`: each output's name, the layer it
    is when that is named otherwise, its kind and its shape (netspec.kinds)."""
    from netspec.kinds import output_infos

    parts = []
    for info, layer in zip(output_infos(compiled), compiled.graph.outputs, strict=True):
        named = info.name if info.name == layer else f"{info.name} ({layer})"
        parts.append(f"{named}: {info.kind} {fmt_shape(info.shape or ())}")
    return ", ".join(parts)


def _layer_json(layer: Layer) -> dict[str, Any]:
    return {
        "name": layer.name,
        "op": layer.op,
        "shape": list(layer.shape),
        "receptive_field": {  # along (H, W), or along L alone for a 1-D signal
            "size": [_num(layer.rf.size[i]) for i in layer.rf.axes],
            "jump": [_num(layer.rf.jump[i]) for i in layer.rf.axes],
            "start": [_num(layer.rf.start[i]) for i in layer.rf.axes],
            "whole_input": layer.rf.whole,
            "region": layer.rf.region,  # a RoI's bin (or region) grown by size
        },
        "params": layer.params,
        "fixed_params": layer.fixed,
        "shared_with": layer.shared_with,
        "macs": layer.macs,
        "line": layer.span.line,
    }


def _outputs_json(compiled: Compiled) -> list[dict[str, Any]]:
    """Each output's name, the layer it is, and its kind (netspec.kinds)."""
    from netspec.kinds import output_infos

    infos = zip(output_infos(compiled), compiled.graph.outputs, strict=True)
    return [{"name": info.name, "layer": layer, "kind": info.kind} for info, layer in infos]


def _detection_json(compiled: Compiled) -> dict[str, Any] | None:
    """The detection head's grid, boxes, classes, thresholds and cell geometry, if any."""
    from dataclasses import asdict

    from netspec.kinds import detection_head

    head = detection_head(compiled)
    return None if head is None else {**asdict(head), "boxes_per_image": head.per_image}


def to_json(compiled: Compiled) -> dict[str, Any]:
    tot = compiled.totals
    return {
        "network": compiled.graph.name,
        "inputs": {i.name: list(i.shape) for i in compiled.graph.inputs},
        "outputs": list(compiled.graph.outputs),
        "output_kinds": _outputs_json(compiled),
        "detection": _detection_json(compiled),
        "layers": [_layer_json(layer) for layer in compiled.layers],
        "totals": {
            "params": tot.params,
            "trainable_params": tot.trainable_params,
            "fixed_params": tot.fixed_params,
            "macs": tot.macs,
            "activations_per_sample": tot.activations,
            "memory_per_sample_bytes": tot.memory_per_sample,
        },
    }
