"""HOG's pictures for `netspec show`: the gradient maps, and the glyphs of Dalal and Triggs'
figures (in each cell a star of line segments, one per orientation bin, each along the
edges whose gradients voted into that bin, as long as the bin's value).

A network shows them where it has a layer whose operation's channels are orientation bins
(the registry's `orientations` fact: `orientation_bins`); the gradients are the two maps
that layer reads (gx along W, then gy along H, downwards), and the cells are the layer that
pools its bins: the one that reads it, keeps its channels and moves by more pixels
(`avgpool 8x8`). Each cell's glyph is centred on its receptive field (start + index x jump),
so overlapping cells (`avgpool 6x6 stride=4`) and unpadded gradients land where they look.

The glyphs are drawn into a raster here, not as matplotlib lines, and the raster is placed
in the PNG pixel for pixel (`Figure.figimage`): the returned `origin` says where, so that a
test reads the segments back from the file itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from netspec.ops import REGISTRY
from netspec.probe import LayerView, Probe
from netspec.show.pictures import DPI, Drawn, FloatArray, save_figure

GLYPH_SIDE = 384  # pixels the glyph raster aims at along the image's longer side
MAX_SCALE = 16  # raster pixels per input pixel, at most
MAX_GLYPH_SIDE = 2048  # input pixels a side above which no glyph picture is drawn
REACH = 0.45  # the longest segment's half-length, in cells (the gap keeps stars apart)
MARGIN, HEADER = 12, 40  # pixels around the panels and above them for their titles


@dataclass(frozen=True)
class HogStage:
    """The layers of a HOG network that `show` draws: the gradients (two maps, or None
    when the bins read the network's input), the orientation bins with each bin's centre
    (degrees) and the cells (None without a pooling after the bins)."""

    gradients: LayerView | None
    bins: LayerView
    angles: tuple[float, ...]
    cells: LayerView | None


def hog_stage(probe: Probe) -> HogStage | None:
    """The first layer of orientation bins with its gradients and cells, or None."""
    views = {v.name: v for v in probe.layers}
    for view in probe.layers:
        rule = REGISTRY[view.op].orientations
        if rule is None:
            continue
        angles = rule(probe.compiled.graph.node(view.name).params)
        gradients = views.get(view.inputs[0]) if view.inputs else None
        cells = next((v for v in probe.layers if _pools(view, v)), None)
        return HogStage(gradients, view, angles, cells)
    return None


def _pools(bins: LayerView, view: LayerView) -> bool:
    """`view` reads the bins, keeps their channels and moves by more pixels: their cells."""
    if view.inputs != (bins.name,) or not (view.spatial and bins.spatial):
        return False
    assert view.rf_jump is not None and bins.rf_jump is not None
    wider = all(a > b for a, b in zip(view.rf_jump, bins.rf_jump, strict=True))
    return view.shape[0] == bins.shape[0] and wider


def draw_gradients(stage: HogStage, outputs: dict[str, FloatArray], out: Path) -> Drawn | None:
    """`hog-gradients.png`: gx, gy (one symmetric scale), the magnitude, and the unsigned
    orientation atan2(gy, gx) mod 180 as a hue, as bright as the magnitude."""
    if stage.gradients is None or stage.gradients.shape[0] != 2:
        return None
    gx, gy = outputs[stage.gradients.name][0]
    magnitude = np.hypot(gx, gy)
    orientation = np.degrees(np.arctan2(gy, gx)) % 180.0
    top = float(magnitude.max()) or 1.0
    hue = plt.get_cmap("hsv")(orientation / 180.0)[..., :3] * (magnitude / top)[..., None]
    limit = float(max(np.abs(gx).max(), np.abs(gy).max())) or 1.0
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.8))
    for ax, plane, title in ((axes[0], gx, "gx (along W)"), (axes[1], gy, "gy (along H, down)")):
        image = ax.imshow(plane, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=axes[:2], shrink=0.7)
    axes[2].imshow(magnitude, cmap="gray", vmin=0, vmax=top, interpolation="nearest")
    axes[2].set_title("magnitude", fontsize=9)
    axes[3].imshow(hue, interpolation="nearest")
    axes[3].set_title("orientation mod 180 (hue), magnitude (brightness)", fontsize=8)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"HOG's gradients: {stage.gradients.name}, read by {stage.bins.name}", fontsize=9)
    path = out / "hog-gradients.png"
    save_figure(fig, path)
    data = {"gx": gx, "gy": gy, "magnitude": magnitude, "orientation": orientation}
    return Drawn(path, data)


def glyphs(
    cells: FloatArray,
    angles: tuple[float, ...],
    start: tuple[float, float],
    jump: tuple[float, float],
    size: tuple[int, int],
    scale: int,
) -> FloatArray:
    """The glyph raster `(H*scale, W*scale)`: 1 on each segment, 0 elsewhere. Cell (i, j)'s
    star is centred at start + (i, j) * jump (input pixels, pixel k spanning [k, k+1));
    bin k's segment runs along the edge, perpendicular to its centre angle θ (the gradient
    (cos θ, sin θ) in (column, row), rows downwards), its half-length `REACH` of a cell
    times its value over the largest of all."""
    raster = np.zeros((size[0] * scale, size[1] * scale), np.float32)
    top = float(cells.max())
    if top <= 0:
        return raster
    reach = REACH * min(jump) * scale
    t = np.linspace(-1.0, 1.0, 2 * math.ceil(4 * reach) + 1)
    cy = (start[0] + np.arange(cells.shape[1]) * jump[0]) * scale
    cx = (start[1] + np.arange(cells.shape[2]) * jump[1]) * scale
    for plane, angle in zip(cells, angles, strict=True):
        theta = math.radians(angle)
        half = reach * np.clip(plane, 0, None) / top  # (cells down, cells across)
        rows = cy[:, None, None] + half[..., None] * t * math.cos(theta)
        cols = cx[None, :, None] - half[..., None] * t * math.sin(theta)
        r, c = np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)
        keep = (half[..., None] > 0) & (r >= 0) & (r < raster.shape[0])
        keep &= (c >= 0) & (c < raster.shape[1])
        raster[r[keep], c[keep]] = 1.0
    return raster


def draw_glyphs(
    stage: HogStage, outputs: dict[str, FloatArray], picture: FloatArray, out: Path
) -> Drawn | None:
    """`hog-glyphs.png`: the input beside its cells' glyphs, each panel `scale` pixels of
    the file per input pixel. None without cells, or for an image over `MAX_GLYPH_SIDE`."""
    cells = stage.cells
    height, width = picture.shape[:2]
    if cells is None or max(height, width) > MAX_GLYPH_SIDE:
        return None
    assert cells.rf_start is not None and cells.rf_jump is not None
    start = (float(cells.rf_start[0]), float(cells.rf_start[1]))
    jump = (float(cells.rf_jump[0]), float(cells.rf_jump[1]))
    scale = int(np.clip(GLYPH_SIDE // max(height, width), 1, MAX_SCALE))
    hist = outputs[cells.name][0]
    raster = glyphs(hist, stage.angles, start, jump, (height, width), scale)
    big = np.repeat(np.repeat(np.clip(picture, 0, 1), scale, 0), scale, 1)
    h, w = raster.shape
    fig_w, fig_h = 3 * MARGIN + 2 * w, HEADER + h + MARGIN
    fig = plt.figure(figsize=(fig_w / DPI, fig_h / DPI), dpi=DPI)
    fig.patch.set_facecolor("white")
    top = HEADER  # the panels' first row, counted from the file's top
    fig.figimage(big, MARGIN, MARGIN, origin="upper", cmap="gray", vmin=0, vmax=1)
    fig.figimage(raster, 2 * MARGIN + w, MARGIN, origin="upper", cmap="gray", vmin=0, vmax=1)
    bins = len(stage.angles)
    down, across = hist.shape[1:]
    fig.text(MARGIN / fig_w, 1 - 8 / fig_h, "input", fontsize=8, va="top")
    fig.text(
        (2 * MARGIN + w) / fig_w,
        1 - 8 / fig_h,
        f"HOG glyphs of {cells.name}: {down}x{across} cells every {jump[0]:g} px, {bins} bins"
        "\neach segment along the edge, as long as its bin's value",
        fontsize=7,
        va="top",
    )
    path = out / "hog-glyphs.png"
    save_figure(fig, path)
    data = {"glyphs": raster, "cells": hist, "origin": (top, 2 * MARGIN + w), "scale": scale}
    return Drawn(path, data)
