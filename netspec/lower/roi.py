"""Region-of-interest pooling in torch, for the R-CNN family: `RoIPool` (Fast R-CNN's max over
each bin of a fixed grid) and `RoIAlign` (Mask R-CNN's bilinear samples, averaged per bin), with
torchvision.ops.roi_pool's and roi_align's arithmetic, written in plain torch operators (netspec
does not depend on torchvision). The words `roi_pool`, `roi_align` and `ps_roi_pool`
(netspec.ops.roi) lower to `RoiSet`, and what is applied per region after them to
`PerRegion`: this module's ``BUILDERS``.

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

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.jit._trace import TracerWarning

from netspec.ir import Shape
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.ops.roi import PsRoiPoolParams, RoiAlignParams, RoiPlaced

# RoIs handled at once in eager mode: the maps are gathered per RoI, K x C x H x W values
CHUNK = 64
ALIGNED_OPSET = 16  # RoiAlign's coordinate_transformation_mode


def _round(v: Tensor) -> Tensor:
    """Half away from zero, as C's round (torchvision, ONNX Runtime); torch.round goes to even."""
    return torch.sign(v) * torch.floor(v.abs() + 0.5)


def _spans(start: Tensor, length: Tensor, bins: int, size: int) -> tuple[Tensor, Tensor]:
    """Each of ``bins`` bins of each RoI as its first cell and one past its last, ``(K, bins)``
    each: bin b of a RoI starting at cell ``start``, ``length`` cells long, spans
    [floor(b·length/bins), ceil((b+1)·length/bins)) from the start, clipped to the map."""
    step = (length / bins)[:, None]
    b = torch.arange(bins, dtype=step.dtype, device=step.device)[None]
    low = (torch.floor(b * step) + start[:, None]).clamp(0, size)
    high = (torch.ceil((b + 1) * step) + start[:, None]).clamp(0, size)
    return low.long(), high.long()


def _maxima(x: Tensor, axis: int) -> Tensor:
    """The sparse table of ``x``'s maxima along ``axis``, its levels on a new axis there:
    level l holds at cell i the max of cells i .. i + 2^l - 1 (the last cell past the end).
    Any span's max is then the max of two overlapping power-of-two spans."""
    size = x.shape[axis]
    levels = [x]
    while 2 ** len(levels) <= size:
        ahead = torch.arange(size, device=x.device) + 2 ** (len(levels) - 1)
        levels.append(
            torch.maximum(levels[-1], levels[-1].index_select(axis, ahead.clamp(max=size - 1)))
        )
    return torch.stack(levels, axis)


def _lookups(low: Tensor, high: Tensor) -> tuple[Tensor, Tensor]:
    """A span's level, floor(log2(length)), and the first cells of its two overlapping
    power-of-two spans, ``(K, bins, 2)``."""
    level = torch.log2((high - low).clamp(min=1).double()).floor().long()
    return level, torch.stack([low, (high - (1 << level)).clamp(min=0)], -1)


def roi_pool(x: Tensor, rois: Tensor, output: tuple[int, int], spatial_scale: float) -> Tensor:
    """torchvision.ops.roi_pool: each RoI's corners rounded to map cells (at least one cell
    wide), divided into ``output`` bins, the max of each bin; an empty bin (past the map) is 0.
    Each bin's max is read from a sparse table of the maps' maxima (rows, then columns) in
    four lookups, whatever its size."""
    ph, pw = output
    c, h, w = x.shape[1:]
    start_x, start_y = _round(rois[:, 1] * spatial_scale), _round(rois[:, 2] * spatial_scale)
    end_x, end_y = _round(rois[:, 3] * spatial_scale), _round(rois[:, 4] * spatial_scale)
    x0, x1 = _spans(start_x, (end_x - start_x + 1).clamp(min=1), pw, w)  # (K, PW)
    y0, y1 = _spans(start_y, (end_y - start_y + 1).clamp(min=1), ph, h)  # (K, PH)
    table = _maxima(_maxima(x, 2), 4)  # (N, C, LH, H, LW, W)
    levels_h, levels_w = table.shape[2], table.shape[4]
    cells = table.permute(0, 2, 3, 4, 5, 1).reshape(-1, c)  # one row per (n, lh, y, lw, x)
    level_y, ys = _lookups(y0, y1)
    level_x, xs = _lookups(x0, x1)
    image = rois[:, 0].long()[:, None, None]
    plane = ((image * levels_h + level_y[:, :, None]) * h)[..., None, None] + ys[
        :, :, None, :, None
    ]
    at = (plane * levels_w + level_x[:, None, :, None, None]) * w + xs[:, None, :, None, :]
    found = cells[at.reshape(-1)].reshape(*at.shape, c).amax((3, 4))  # (K, PH, PW, C)
    empty = (y1 <= y0)[:, :, None] | (x1 <= x0)[:, None, :]
    return found.masked_fill(empty[..., None], 0).permute(0, 3, 1, 2)


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
        # the trace records `symbolic`, not these steps: the sparse table's levels, counted
        # from the map's size, are no data flow the graph could lose
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", TracerWarning)
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


def region_rows(rois: Tensor) -> Tensor:
    """A RoI set ``(N, K, F)`` (x1, y1, x2, y2 first) as ``(N·K, 5)`` rows: each row's image
    index, then its corners, what `RoIPool` and `RoIAlign` read."""
    index = torch.ones_like(rois[..., :1]).cumsum(0) - 1  # (N, K, 1): the image's index
    return torch.cat([index, rois[..., :4]], -1).flatten(0, 1)


class RoiSet(nn.Module):
    """Maps ``(N, C, H, W)`` and a RoI set ``(N, K, F)`` to ``(N, K, C', PH, PW)``: each image's
    K regions pooled by ``pool`` (`RoIPool`, `RoIAlign` or `PsRoIAlign`)."""

    def __init__(self, pool: nn.Module, regions: int) -> None:
        super().__init__()
        self.pool, self.regions = pool, regions

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        out: Tensor = self.pool(x, region_rows(rois))  # (N·K, C', PH, PW)
        return out.reshape(-1, self.regions, *out.shape[1:])


class PsRoIAlign(nn.Module):
    """R-FCN's position-sensitive pooling: maps ``(N, C·PH·PW, H, W)`` and boxes ``(K, 5)`` to
    ``(K, C, PH, PW)``, bin (i, j) of map c pooled from map c·PH·PW + i·PW + j. ONNX has no
    such operator: every map is pooled to every bin (`RoIAlign`, RoiAlign in ONNX), then each
    bin keeps its own map (a product with a one-hot choice and a sum)."""

    # (PH·PW, PH, PW): bin (i, j) keeps map group i·PW + j. Three axes, not five: a module
    # moved channels-last (training) re-lays every 4- and 5-axis tensor, a 5-axis one fails
    pick: Tensor

    def __init__(
        self, output: tuple[int, int], spatial_scale: float, sampling: int, aligned: bool
    ) -> None:
        super().__init__()
        ph, pw = output
        self.align = RoIAlign(output, spatial_scale, sampling, aligned)
        pick = torch.eye(ph * pw).reshape(ph * pw, ph, pw)
        self.register_buffer("pick", pick, persistent=False)

    def forward(self, x: Tensor, rois: Tensor) -> Tensor:
        bins = self.pick.shape[0]
        pooled: Tensor = self.align(x, rois)  # (K, C·PH·PW, PH, PW): every map at every bin
        grouped = pooled.reshape(pooled.shape[0], -1, bins, *pooled.shape[2:])
        return (grouped * self.pick).sum(2)


class PerRegion(nn.Module):
    """An operation applied to each region: ``(N, K, ...)`` folded to ``(N·K, ...)`` for
    ``op`` (flattened per region first, for a dense stage), and unfolded after."""

    def __init__(self, op: nn.Module, regions: int, flatten: bool) -> None:
        super().__init__()
        self.op, self.regions, self.flatten = op, regions, flatten

    @property
    def weight(self) -> Tensor:
        """The operation's weight, which `init=` redraws."""
        weight = self.op.weight
        assert isinstance(weight, Tensor)
        return weight

    @property
    def bias(self) -> Tensor | None:
        bias: Tensor | None = getattr(self.op, "bias", None)
        return bias

    def fans(self) -> tuple[float, float, bool]:
        """(fan-in, fan-out, convolutional?) of the operation's weight, for `init=`."""
        own = getattr(self.op, "fans", None)
        if callable(own):
            fans: tuple[float, float, bool] = own()
            return fans
        w = self.weight
        receptive = w[0, 0].numel()
        return w.shape[1] * receptive, w.shape[0] * receptive, w.dim() > 2

    def forward(self, *xs: Tensor) -> Tensor:
        folded = [x.flatten(0, 1) for x in xs]
        if self.flatten:
            folded = [x.flatten(1) for x in folded]
        out: Tensor = self.op(*folded)
        return out.reshape(-1, self.regions, *out.shape[1:])


def per_region(low: Lowered, regions: int) -> Lowered:
    """A node's lowering (built from one region's shapes) applied to each of ``regions``."""
    return Lowered(Call(PerRegion, (low.call, regions, low.flatten)), init=low.init)


def _roi_pool(p: RoiPlaced, ins: Sequence[Shape], out: Shape) -> Lowered:
    pool = Call(RoIPool, (p.params.size, p.scale))
    return Lowered(Call(RoiSet, (pool, out[0])))


def _roi_align(p: RoiPlaced, ins: Sequence[Shape], out: Shape) -> Lowered:
    q = p.params
    assert isinstance(q, RoiAlignParams)
    kind = PsRoIAlign if isinstance(q, PsRoiPoolParams) else RoIAlign
    pool = Call(kind, (q.size, p.scale, q.sampling, q.aligned))
    return Lowered(Call(RoiSet, (pool, out[0])))


BUILDERS: dict[str, Builder] = {
    "roi_pool": _roi_pool,
    "roi_align": _roi_align,
    "ps_roi_pool": _roi_align,
}
