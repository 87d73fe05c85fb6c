"""Region-of-interest pooling in torch, for the R-CNN family: `RoIPool` (Fast R-CNN's max over
each bin of a fixed grid) and `RoIAlign` (Mask R-CNN's bilinear samples, averaged per bin), with
torchvision.ops.roi_pool's and roi_align's arithmetic, written in plain torch operators (netspec
does not depend on torchvision). No operation of the language uses them yet (issue 23): a spec
cannot declare a set of boxes, which has no per-sample batch axis, so this module has no
``BUILDERS``.

Both read feature maps ``(N, C, H, W)`` and boxes ``(K, 5)``: each row a batch index and
x1, y1, x2, y2 in input pixels, turned into map coordinates by ``spatial_scale`` (1 / the
map's receptive-field jump); both output ``(K, C, PH, PW)``, none where K is 0.

Each exports to its own ONNX operator, which ONNX Runtime runs: `MaxRoiPool` (the same
rounding of box corners to map cells) and `RoiAlign` with mode avg, its
coordinate_transformation_mode `half_pixel` where ``aligned`` (opset 16 and later) and
`output_half_pixel` where not. Never RoiAlign with mode max: ONNX defines that one as the max
of the bilinear samples' weighted corners, not of the samples (onnx/onnx#4764), and ONNX
Runtime computes it so (microsoft/onnxruntime#6146).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

# RoIs handled at once in eager mode: the maps are gathered per RoI, K x C x H x W values
CHUNK = 64
ALIGNED_OPSET = 16  # RoiAlign's coordinate_transformation_mode


def _round(v: Tensor) -> Tensor:
    """Half away from zero, as C's round (torchvision, ONNX Runtime); torch.round goes to even."""
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def _bins(start: Tensor, length: Tensor, bins: int, size: int) -> Tensor:
    """Which of ``size`` cells each of ``bins`` bins of each RoI covers: ``(K, bins, size)``
    booleans. Bin b of a RoI starting at cell ``start``, ``length`` cells long, spans
    [floor(b·length/bins), ceil((b+1)·length/bins)) from the start, clipped to the map."""
    step = (length / bins)[:, None]
    b = torch.arange(bins, dtype=step.dtype, device=step.device)[None]
    low = (torch.floor(b * step) + start[:, None]).clamp(0, size)
    high = (torch.ceil((b + 1) * step) + start[:, None]).clamp(0, size)
    cell = torch.arange(size, dtype=step.dtype, device=step.device)[None, None]
    return (cell >= low[..., None]) & (cell < high[..., None])


def roi_pool(x: Tensor, rois: Tensor, output: tuple[int, int], spatial_scale: float) -> Tensor:
    """torchvision.ops.roi_pool: each RoI's corners rounded to map cells (at least one cell
    wide), divided into ``output`` bins, the max of each bin; an empty bin (past the map) is 0.
    Separable: the max over each bin's columns, then over its rows."""
    ph, pw = output
    c, h, w = x.shape[1:]
    start_x, start_y = _round(rois[:, 1] * spatial_scale), _round(rois[:, 2] * spatial_scale)
    end_x, end_y = _round(rois[:, 3] * spatial_scale), _round(rois[:, 4] * spatial_scale)
    cols = _bins(start_x, (end_x - start_x + 1).clamp(min=1), pw, w)  # (K, PW, W)
    rows = _bins(start_y, (end_y - start_y + 1).clamp(min=1), ph, h)  # (K, PH, H)
    low = torch.finfo(x.dtype).min
    pieces = []
    for index, col, row in zip(
        torch.split(rois[:, 0].long(), CHUNK),
        torch.split(cols, CHUNK),
        torch.split(rows, CHUNK),
        strict=True,
    ):
        maps = x[index]  # (k, C, H, W)
        across = maps[:, :, :, None, :].masked_fill(~col[:, None, None], low).amax(-1)
        down = across[:, :, None].masked_fill(~row[:, None, :, :, None], low).amax(3)
        empty = ~(row.any(-1)[:, :, None] & col.any(-1)[:, None, :])  # (k, PH, PW)
        pieces.append(down.masked_fill(empty[:, None], 0))
    return torch.cat(pieces) if pieces else x.new_zeros(0, c, ph, pw)


def _weights(start: Tensor, bin_size: Tensor, bins: int, grid: int, size: int) -> Tensor:
    """Each bin's average of its ``grid`` bilinear samples along one axis, as weights on the
    axis' cells: ``(K, bins, size)``. A sample more than a cell outside the map counts as 0,
    one less than a cell outside is clamped to the border (torchvision's rule)."""
    dtype, device = start.dtype, start.device
    b = torch.arange(bins, dtype=dtype, device=device)[:, None]
    s = torch.arange(grid, dtype=dtype, device=device)[None]
    at = start[:, None, None] + bin_size[:, None, None] * (b + (s + 0.5) / grid)[None]
    inside = (at >= -1) & (at <= size)
    at = at.clamp(min=0)
    lower = torch.floor(at).clamp(max=size - 1)
    at = torch.where(lower >= size - 1, lower, at)
    upper = (lower + 1).clamp(max=size - 1)
    frac = at - lower
    cell = torch.arange(size, dtype=dtype, device=device)
    weight = (cell == lower[..., None]) * (1 - frac)[..., None]
    weight = weight + (cell == upper[..., None]) * frac[..., None]
    return (weight * inside[..., None]).mean(2)


def roi_align(
    x: Tensor,
    rois: Tensor,
    output: tuple[int, int],
    spatial_scale: float,
    sampling: int,
    aligned: bool,
) -> Tensor:
    """torchvision.ops.roi_align with a fixed ``sampling`` (samples per bin along each axis):
    each bin the mean of its sampling² bilinear samples. ``aligned`` shifts the box by half a
    cell, so that a pixel's centre is where its map value is (Detectron2); without it the box
    is at least one cell wide. Bilinear weights are separable: rows @ maps @ columnsᵀ."""
    ph, pw = output
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    width = rois[:, 3] * spatial_scale - offset - x1
    height = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        width, height = width.clamp(min=1), height.clamp(min=1)
    rows = _weights(y1, height / ph, ph, sampling, x.shape[2]).to(x.dtype)  # (K, PH, H)
    cols = _weights(x1, width / pw, pw, sampling, x.shape[3]).to(x.dtype)  # (K, PW, W)
    pieces = [
        torch.einsum("kph,kchw,kqw->kcpq", row, x[index], col)
        for index, row, col in zip(
            torch.split(rois[:, 0].long(), CHUNK),
            torch.split(rows, CHUNK),
            torch.split(cols, CHUNK),
            strict=True,
        )
    ]
    return torch.cat(pieces) if pieces else x.new_zeros(0, x.shape[1], ph, pw)


class _MaxRoiPoolOnnx(torch.autograd.Function):
    """`roi_pool` as ONNX's MaxRoiPool: what the export traces in its place."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, rois: Tensor, output: tuple[int, int], scale: float) -> Tensor:
        return roi_pool(x, rois, output, scale)

    @staticmethod
    def symbolic(g: Any, x: Any, rois: Any, output: tuple[int, int], scale: float) -> Any:
        return g.op("MaxRoiPool", x, rois, pooled_shape_i=list(output), spatial_scale_f=scale)


class _RoiAlignOnnx(torch.autograd.Function):
    """`roi_align` as ONNX's RoiAlign (mode avg), boxes split into batch indices and corners."""

    @staticmethod
    def forward(
        ctx: Any,
        x: Tensor,
        rois: Tensor,
        output: tuple[int, int],
        scale: float,
        sampling: int,
        aligned: bool,
    ) -> Tensor:
        return roi_align(x, rois, output, scale, sampling, aligned)

    @staticmethod
    def symbolic(
        g: Any,
        x: Any,
        rois: Any,
        output: tuple[int, int],
        scale: float,
        sampling: int,
        aligned: bool,
    ) -> Any:
        mode: dict[str, str] = {}
        if g.opset >= ALIGNED_OPSET:
            mode["coordinate_transformation_mode_s"] = (
                "half_pixel" if aligned else "output_half_pixel"
            )
        elif aligned:
            raise ValueError(
                f"RoIAlign with aligned=true needs ONNX opset {ALIGNED_OPSET} or later"
            )
        one = g.op("Constant", value_t=torch.tensor([1], dtype=torch.long))
        five = g.op("Constant", value_t=torch.tensor([5], dtype=torch.long))
        axis = g.op("Constant", value_t=torch.tensor([1], dtype=torch.long))
        zero = g.op("Constant", value_t=torch.tensor([0], dtype=torch.long))
        index = g.op("Slice", rois, zero, one, axis)
        batch = g.op("Cast", g.op("Squeeze", index, axis), to_i=7)  # int64
        boxes = g.op("Slice", rois, one, five, axis)
        return g.op(
            "RoiAlign",
            x,
            boxes,
            batch,
            mode_s="avg",
            output_height_i=output[0],
            output_width_i=output[1],
            sampling_ratio_i=sampling,
            spatial_scale_f=scale,
            **mode,
        )


class RoIPool(nn.Module):
    """Maps ``(N, C, H, W)`` and boxes ``(K, 5)`` to ``(K, C, *output)``: Fast R-CNN's RoI
    max pooling (`roi_pool`); MaxRoiPool in ONNX."""

    def __init__(self, output: tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        self.output, self.spatial_scale = output, spatial_scale

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        if torch.onnx.is_in_onnx_export():
            out: Tensor = _MaxRoiPoolOnnx.apply(  # type: ignore[no-untyped-call]
                x, rois, self.output, self.spatial_scale
            )
            return out
        return roi_pool(x, rois, self.output, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"{self.output}, spatial_scale={self.spatial_scale}"


class RoIAlign(nn.Module):
    """Maps ``(N, C, H, W)`` and boxes ``(K, 5)`` to ``(K, C, *output)``: RoIAlign's averaged
    bilinear samples (`roi_align`); RoiAlign (mode avg) in ONNX."""

    def __init__(
        self, output: tuple[int, int], spatial_scale: float, sampling: int, aligned: bool
    ) -> None:
        super().__init__()
        if sampling < 1:
            raise ValueError(f"sampling must be at least 1, got {sampling}")
        self.output, self.spatial_scale = output, spatial_scale
        self.sampling, self.aligned = sampling, aligned

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        args = (self.output, self.spatial_scale, self.sampling, self.aligned)
        if torch.onnx.is_in_onnx_export():
            out: Tensor = _RoiAlignOnnx.apply(x, rois, *args)  # type: ignore[no-untyped-call]
            return out
        return roi_align(x, rois, *args)

    def extra_repr(self) -> str:
        return (
            f"{self.output}, spatial_scale={self.spatial_scale}, sampling={self.sampling}, "
            f"aligned={self.aligned}"
        )
