"""The pictures `netspec show` writes, each from a Probe and one input.

Every function draws with matplotlib's Agg backend (imported here, lazily by the CLI),
writes its PNG atomically (netspec.fileio) and returns what it drew as arrays, so that a
test checks the numbers a picture shows, not only that a file exists.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import numpy.typing as npt
from matplotlib.patches import Rectangle

from netspec.fileio import write_atomic
from netspec.ops import REGISTRY
from netspec.probe import LayerView, Probe
from netspec.show.receptive import Box, Unit, empirical_boxes, static_box

FloatArray = npt.NDArray[np.float32]
MAX_TILES = 64  # maps per panel; a wider layer shows its first ones and says so
MAX_UNITS = 512  # bars of a layer without maps (dense); a wider one shows its first ones
MAX_LAYERS = 16  # layers whose maps are drawn unless named (--layer); docs/limits.md
MAX_SIDE = 512  # pixels a tile's map is drawn at, at most (a larger one is subsampled)
DPI = 80


@dataclass
class Drawn:
    """A picture written, and the arrays it shows (by panel)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)


def safe_name(layer: str) -> str:
    """A layer name as part of a file name: `layer3.1.conv2` stays, odd characters go."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", layer)


def save_figure(fig: Any, path: Path) -> None:
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))
    plt.close(fig)


def _grid(n: int) -> tuple[int, int]:
    cols = int(np.ceil(np.sqrt(n)))
    return int(np.ceil(n / cols)), cols


def _subsampled(plane: FloatArray) -> FloatArray:
    """A map with at most `MAX_SIDE` pixels a side (every k-th row and column): a tile is
    a few dozen pixels wide, and a map of 8192x8192 would cost matplotlib gigabytes."""
    step = -(-max(plane.shape) // MAX_SIDE)
    return plane[::step, ::step] if step > 1 else plane


def _tiles(fig: Any, spec: Any, maps: FloatArray, limit: float, title: str) -> Any:
    """One panel: a tile per map, one symmetric colour scale for all."""
    shown = [_subsampled(plane) for plane in maps[:MAX_TILES]]
    rows, cols = _grid(len(shown))
    inner = spec.subgridspec(rows + 1, cols, height_ratios=[*([1] * rows), 0.12])
    image = None
    for k, plane in enumerate(shown):
        ax = fig.add_subplot(inner[k // cols, k % cols])
        image = ax.imshow(plane, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(str(k), fontsize=6, pad=1)
    more = f" (first {MAX_TILES} of {len(maps)})" if len(maps) > MAX_TILES else ""
    head = fig.add_subplot(inner[0, :], frameon=False)
    head.set_xticks([])
    head.set_yticks([])
    head.set_title(title + more, fontsize=9, pad=14)
    bar = fig.add_subplot(inner[rows, :])
    fig.colorbar(image, cax=bar, orientation="horizontal")
    bar.tick_params(labelsize=7)
    return image


def draw_maps(probe: Probe, outputs: dict[str, FloatArray], view: LayerView, out: Path) -> Drawn:
    """`maps-LAYER.png`: the layer's maps for the input; with the activation that follows
    it, the maps before and after it side by side, on one colour scale."""
    after = next((v for v in probe.layers if v.activation_of == view.name), None)
    if len(view.shape) != 3:  # a dense layer: units, not maps
        return _draw_units(view, after, outputs, out)
    panels = [("feature maps", view)] + ([("rectified feature maps", after)] if after else [])
    arrays = {v.name: outputs[v.name][0] for _, v in panels}
    limit = max(float(np.abs(a[:MAX_TILES]).max()) for a in arrays.values()) or 1.0
    fig = plt.figure(figsize=(5.2 * len(panels), 5.6))
    grid = fig.add_gridspec(1, len(panels), wspace=0.15)
    for k, (what, v) in enumerate(panels):
        title = f"{what}: {v.name} ({v.op}) {'x'.join(map(str, v.shape))}"
        _tiles(fig, grid[0, k], arrays[v.name], limit, title)
    where = f"{view.where}: {view.text}" if view.where and view.text else view.name
    fig.suptitle(where, fontsize=8, y=0.995)
    path = out / f"maps-{safe_name(view.name)}.png"
    save_figure(fig, path)
    return Drawn(path, arrays)


def _draw_units(
    view: LayerView, after: LayerView | None, outputs: dict[str, FloatArray], out: Path
) -> Drawn:
    """`maps-LAYER.png` for a layer that has no feature maps (dense, flatten): each unit's
    value as a bar, above the same after the activation that follows it, on one scale."""
    panels = [("units", view)] + ([("after the activation", after)] if after else [])
    values = {v.name: outputs[v.name][0].reshape(-1) for _, v in panels}
    limit = max(float(np.abs(a[:MAX_UNITS]).max()) for a in values.values()) or 1.0
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.6 * len(panels)), squeeze=False)
    for ax, (what, v) in zip(axes[:, 0], panels, strict=True):
        shown = values[v.name][:MAX_UNITS]
        colours = np.where(shown >= 0, "#b2182b", "#2166ac")
        ax.bar(np.arange(len(shown)), shown, width=1.0, color=colours)
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xlim(-0.5, len(shown) - 0.5)
        ax.set_ylim(-1.05 * limit, 1.05 * limit)
        ax.tick_params(labelsize=7)
        more = f", the first {MAX_UNITS}" if len(values[v.name]) > MAX_UNITS else ""
        ax.set_title(
            f"{what}: {v.name} ({v.op}), {len(values[v.name])} units{more}; no feature maps",
            fontsize=9,
        )
    axes[-1, 0].set_xlabel("unit", fontsize=8)
    where = f"{view.where}: {view.text}" if view.where and view.text else view.name
    fig.suptitle(where, fontsize=8)
    fig.tight_layout()
    path = out / f"maps-{safe_name(view.name)}.png"
    save_figure(fig, path)
    return Drawn(path, values)


def first_kernels(probe: Probe) -> tuple[LayerView, FloatArray] | None:
    """The first layer with kernels and its kernels `(out, in, kh, kw)` (fixed ones from the
    spec, trained ones from the network)."""
    for view in probe.layers:
        if not REGISTRY[view.op].kernels:
            continue
        node = probe.compiled.graph.node(view.name)
        fixed = getattr(node.params, "fixed", None)
        if fixed is not None:
            kernels = np.asarray(fixed, np.float32)[:, None]
            return view, kernels
        weights = probe.kernels(view.name)
        if weights is not None:
            return view, weights
    return None


def fixed_stage(probe: Probe) -> list[tuple[LayerView, FloatArray]]:
    """The layers of fixed kernels that read the input itself, with their kernels: feature
    extraction by hand (specs/filters.net)."""
    inputs = {i.name for i in probe.compiled.graph.inputs}
    stage = []
    for view in probe.layers:
        fixed = getattr(probe.compiled.graph.node(view.name).params, "fixed", None)
        if fixed is not None and set(view.inputs) <= inputs:
            stage.append((view, np.asarray(fixed, np.float32)))
    return stage


def kernel_names(view: LayerView, count: int) -> list[str]:
    """The fixed kernels' names as the spec line writes them (`fixed=[identity3, edge1]`)."""
    found = re.search(r"fixed\s*=\s*\[([^\]]*)\]", view.text or "")
    names = re.split(r"[\s,]+", found.group(1).strip()) if found else []
    return names if len(names) == count else [f"kernel {k}" for k in range(count)]


def draw_filters(
    probe: Probe, outputs: dict[str, FloatArray], picture: FloatArray, out: Path
) -> Drawn | None:
    """`filters.png`: a fixed stage's kernels each applied to the input (the lecture's slide),
    else the first layer's kernels on one symmetric scale with its colour bar."""
    stage = fixed_stage(probe)
    path = out / "filters.png"
    if stage:
        return _slide(probe, outputs, picture, stage, path)
    found = first_kernels(probe)
    if found is None:
        return None
    view, kernels = found
    shown = kernels[:MAX_TILES]
    rgb = shown.shape[1] == 3
    limit = float(np.abs(shown).max()) or 1.0
    rows, cols = _grid(len(shown))
    fig, axes = plt.subplots(
        rows, cols, figsize=(cols * 0.9 + 1.2, rows * 0.9 + 0.8), squeeze=False
    )
    image = None
    for ax, kernel in zip(axes.flat, shown, strict=False):
        if rgb:
            ax.imshow(rgb_patch(kernel), interpolation="nearest")
        else:
            image = ax.imshow(
                kernel[0], cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest"
            )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    channels = "" if rgb or kernels.shape[1] == 1 else f", input map 0 of {kernels.shape[1]}"
    fig.suptitle(
        f"{view.name}: {len(kernels)} kernels {kernels.shape[2]}x{kernels.shape[3]}{channels}",
        fontsize=9,
    )
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8)
    else:
        fig.text(
            0.5, 0.01, "RGB, each kernel from its minimum to its maximum", ha="center", fontsize=7
        )
    save_figure(fig, path)
    return Drawn(path, {"kernels": kernels, "layer": view.name})


def rgb_patch(kernel: FloatArray) -> FloatArray:
    """A kernel over three input channels ``(3, kh, kw)`` as an RGB patch ``(kh, kw, 3)`` in
    [0, 1], scaled over its own range (each filter's colours show, however small its
    weights beside another's); a constant kernel is mid-grey."""
    low, high = float(kernel.min()), float(kernel.max())
    scaled = (kernel - low) / (high - low) if high > low else np.full_like(kernel, 0.5)
    return np.asarray(scaled.transpose(1, 2, 0), np.float32)


def _slide(
    probe: Probe,
    outputs: dict[str, FloatArray],
    picture: FloatArray,
    stage: list[tuple[LayerView, FloatArray]],
    path: Path,
) -> Drawn:
    """The input, then each kernel's output map beside the kernel's numbers."""
    panels: list[tuple[str, FloatArray, FloatArray]] = []
    for view, kernels in stage:
        maps = outputs[view.name][0]
        for name, kernel, plane in zip(
            kernel_names(view, len(kernels)), kernels, maps, strict=False
        ):
            panels.append((name, plane, kernel))
    cols = 4
    rows = int(np.ceil((len(panels) + 1) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.4), squeeze=False)
    axes.flat[0].imshow(picture, cmap="gray", vmin=0, vmax=1)
    axes.flat[0].set_title("input", fontsize=9)
    for ax, (name, plane, kernel) in zip(axes.flat[1:], panels, strict=False):
        ax.imshow(np.clip(plane, 0, 1), cmap="gray", vmin=0, vmax=1)
        rows_text = "\n".join(" ".join(f"{v:.3g}" for v in row) for row in kernel)
        ax.set_title(name, fontsize=9)
        ax.text(
            1.0,
            0.0,
            rows_text,
            transform=ax.transAxes,
            fontsize=5,
            family="monospace",
            ha="right",
            va="bottom",
            color="yellow",
            backgroundcolor=(0, 0, 0, 0.6),
        )
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes.flat[len(panels) + 1 :]:
        ax.set_visible(False)
    fig.suptitle("each kernel applied to the image (values clipped to [0, 1])", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path)
    return Drawn(path, {"input": picture, **{name: plane for name, plane, _ in panels}})


def most_active(probe: Probe, outputs: dict[str, FloatArray]) -> Unit | None:
    """The strongest unit of the deepest spatial layer whose field is smaller than the input."""
    height, width = probe.input_shape[-2], probe.input_shape[-1]
    for view in reversed(probe.layers):
        if not view.spatial or view.activation_of is not None:
            continue
        assert view.rf_size is not None
        if view.rf_size[0] >= height and view.rf_size[1] >= width:
            continue
        maps = outputs[view.name][0]
        c, y, x = np.unravel_index(int(np.argmax(maps)), maps.shape)
        return Unit(view.name, int(c), int(y), int(x))
    return None


def draw_receptive_field(
    probe: Probe, outputs: dict[str, FloatArray], picture: FloatArray, unit: Unit, out: Path
) -> Drawn:
    """`receptive-field.png`: the unit's static box (size, jump, start) on the input, beside
    where its gradient reaches the input (netspec.show.receptive); the two must agree."""
    view = probe.layer(unit.layer)
    height, width = probe.input_shape[-2], probe.input_shape[-1]
    static = static_box(view, unit.y, unit.x, height, width)
    empirical = empirical_boxes(probe.compiled, [unit])[0]
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.4))
    for ax, box, what in ((axes[0], static, "static"), (axes[1], empirical, "gradient")):
        ax.imshow(picture, cmap="gray", vmin=0, vmax=1)
        if box is not None:
            ax.add_patch(_rectangle(box, "#ff3030" if what == "static" else "#30c0ff"))
        ax.set_xticks([])
        ax.set_yticks([])
    size = "x".join(f"{s:g}" for s in view.rf_size or ())
    jump = "x".join(f"{j:g}" for j in view.rf_jump or ())
    start = ", ".join(f"{s:g}" for s in view.rf_start or ())
    axes[0].set_title(
        f"static: size {size}, jump {jump}, start ({start})\n{_box_text(static)}", fontsize=8
    )
    axes[1].set_title(f"where the gradient reaches the input\n{_box_text(empirical)}", fontsize=8)
    agree = "agree" if static == empirical else "DISAGREE"
    fig.suptitle(f"unit {unit.layer}:{unit.channel}:{unit.y}:{unit.x} ({agree})", fontsize=10)
    path = out / "receptive-field.png"
    save_figure(fig, path)
    return Drawn(path, {"static": static, "empirical": empirical, "unit": unit})


def _rectangle(box: Box, colour: str) -> Rectangle:
    return Rectangle(
        (box.left - 0.5, box.top - 0.5),
        box.size[1],
        box.size[0],
        fill=False,
        edgecolor=colour,
        linewidth=2,
    )


def _box_text(box: Box | None) -> str:
    if box is None:
        return "reaches no pixel"
    rows, cols = box.size
    return f"rows {box.top}..{box.bottom}, columns {box.left}..{box.right} ({rows}x{cols})"


def occlusion_map(probe: Probe, x: FloatArray, size: int, stride: int) -> tuple[FloatArray, int]:
    """Zeiler & Fergus: the drop in the predicted class's probability as a square of
    `size` (set to the normalized zero: the training set's mean) covers each place."""
    base = probe.probabilities(probe.run(x))
    assert base is not None
    target = int(np.argmax(base[0]))
    height, width = x.shape[-2], x.shape[-1]
    ys = list(range(0, max(height - size, 0) + 1, stride))
    xs = list(range(0, max(width - size, 0) + 1, stride))
    places = [(y, x0) for y in ys for x0 in xs]
    drops = np.empty(len(places), np.float32)
    step = probe.batch_limit(64)  # each batch made when it runs: memory for one, not all
    for start in range(0, len(places), step):
        batch = np.repeat(x, len(places[start : start + step]), axis=0)
        for k, (y, x0) in enumerate(places[start : start + step]):
            batch[k, :, y : y + size, x0 : x0 + size] = 0.0
        chunk = probe.probabilities(probe.run(batch))
        assert chunk is not None
        drops[start : start + len(chunk)] = base[0, target] - chunk[:, target]
    return drops.reshape(len(ys), len(xs)), target


def draw_occlusion(probe: Probe, x: FloatArray, picture: FloatArray, out: Path) -> Drawn | None:
    """`occlusion.png`, for a classifier: where covering the input lowers its answer most."""
    if probe.classes is None:
        return None
    height = x.shape[-2]
    size = max(2, height // 6)
    stride = max(1, size // 2)
    drops, target = occlusion_map(probe, x, size, stride)
    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    axes[0].imshow(picture, cmap="gray", vmin=0, vmax=1)
    axes[0].set_title(f"input: {probe.classes[target]}", fontsize=9)
    limit = float(np.abs(drops).max()) or 1.0
    image = axes[1].imshow(drops, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    axes[1].set_title(
        f"drop in p({probe.classes[target]}), {size}x{size} square, stride {stride}", fontsize=9
    )
    fig.colorbar(image, ax=axes[1], shrink=0.8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    path = out / "occlusion.png"
    save_figure(fig, path)
    return Drawn(path, {"drops": drops, "class": target, "size": size, "stride": stride})


def draw_top_activations(
    probe: Probe, images: FloatArray, pictures: FloatArray, out: Path, units: int = 4, top: int = 6
) -> Drawn | None:
    """`top-activations.png`: for a few maps of each spatial layer, the images that excite
    it most, each cropped to the receptive field of its strongest unit (Zeiler & Fergus).
    ``pictures`` are the inputs as pixels in [0, 1]: ``(N, H, W)`` grey, or ``(N, H, W, 3)``
    colour (un-normalized with the run's per-channel mean and std), drawn in RGB."""
    views = spatial_groups(probe, ())
    if not views:
        return None
    scores: dict[str, list[FloatArray]] = {v.name: [] for v in views}
    places: dict[str, list[npt.NDArray[np.int64]]] = {v.name: [] for v in views}
    step = probe.batch_limit(256)
    for start in range(0, len(images), step):
        outputs = probe.run(images[start : start + step])
        for v in views:
            maps = outputs[v.name][:, :units]
            flat = maps.reshape(*maps.shape[:2], -1)
            scores[v.name].append(flat.max(axis=2))
            places[v.name].append(flat.argmax(axis=2))
    height, width = probe.input_shape[-2], probe.input_shape[-1]
    rows: list[tuple[str, list[FloatArray]]] = []
    chosen: dict[str, list[list[int]]] = {}
    for v in views:
        score, place = np.concatenate(scores[v.name]), np.concatenate(places[v.name])
        chosen[v.name] = []
        for c in range(score.shape[1]):
            best = [int(i) for i in np.argsort(-score[:, c], kind="stable")[:top]]
            chosen[v.name].append(best)
            crops = []
            for i in best:
                y, x = np.unravel_index(int(place[i, c]), v.shape[1:])
                box = static_box(v, int(y), int(x), height, width)
                assert box is not None
                crops.append(pictures[i][box.top : box.bottom + 1, box.left : box.right + 1])
            rows.append((f"{v.name}:{c}", crops))
    fig, axes = plt.subplots(
        len(rows), top, figsize=(top * 0.9 + 1.4, len(rows) * 0.9), squeeze=False
    )
    for r, (label, crops) in enumerate(rows):
        for k, crop in enumerate(crops):
            ax = axes[r, k]
            grey = "gray" if crop.ndim == 2 else None  # (h, w, 3) crops: RGB as they are
            ax.imshow(crop, cmap=grey, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(
        f"the {top} of {len(images)} test images each map's strongest unit likes most", fontsize=9
    )
    path = out / "top-activations.png"
    save_figure(fig, path)
    return Drawn(path, {"chosen": chosen})


def spatial_groups(probe: Probe, names: Sequence[str]) -> list[LayerView]:
    """The layers whose maps to draw: `names` (an activation stands for the layer it
    rectifies), else the first `MAX_LAYERS` spatial layers that are not activations drawn
    beside their source (`spatial_layers` says how many there are)."""
    if names:
        views = [probe.layer(n) for n in names]
        return list(
            dict.fromkeys(probe.layer(v.activation_of) if v.activation_of else v for v in views)
        )
    return spatial_layers(probe)[:MAX_LAYERS]


def spatial_layers(probe: Probe) -> list[LayerView]:
    """Every spatial layer that is not an activation (drawn beside the layer it follows)."""
    return [v for v in probe.layers if v.spatial and v.activation_of is None]
