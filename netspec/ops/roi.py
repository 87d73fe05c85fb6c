"""Pooling a set of regions from feature maps: the R-CNN family's words.

`roi_pool(features, rois, 7x7)` is Fast R-CNN's RoI max pooling: each region of the RoI set
``rois`` (K boxes of each image, from `proposals` or an input of K x 4 corners) divided into a
7 x 7 grid of bins, the max of each bin. `roi_align(features, rois, 7x7, sampling=2,
aligned=true)` is Mask R-CNN's: each bin the mean of sampling² bilinear samples, `aligned`
putting a pixel's centre where its map value is. `ps_roi_pool(features, rois, 3x3,
classes=C)` is R-FCN's position-sensitive pooling: its k² x C input maps are C maps per bin of
the k x k grid, and bin (i, j) of output map c is pooled (as `roi_align`) from input map
c·k² + i·k + j only.

A box is x1, y1, x2, y2 in input pixels. The factor that turns it into map cells, the
spatial scale, is 1 / the features' receptive-field jump: known statically, never written.

The output's leading axis counts regions, K of each image: ``K x C x PH x PW`` per image.
What follows a RoI pooling (a dense or conv head) is applied per region
(netspec.passes.regions), and a unit's receptive field is the region's bin grown by the
backbone's field (`RF.region`). The torch halves are in netspec.lower.roi.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from netspec.ir import OpParams, Shape
from netspec.ops.registry import RF, Cost, OpDef, Pair, Pos, ShapeError, register
from netspec.text import fmt_shape

BOX_FIELDS = (4, 5)  # a RoI set's row: x1, y1, x2, y2 (and the proposal's score)
TAPS = 4  # a bilinear sample reads four cells


class RoiPoolParams(OpParams):
    """`roi_pool(features, rois, 7x7)`: the grid of bins (PH x PW) each region is pooled to."""

    size: Pair


class RoiAlignParams(RoiPoolParams):
    """`roi_align(features, rois, 7x7 [, sampling=2] [, aligned=true])`: bilinear samples per
    bin along each axis, and the half-pixel shift of Detectron2 (PyTorch's `aligned`)."""

    sampling: Pos = 2
    aligned: bool = True


class PsRoiPoolParams(RoiAlignParams):
    """`ps_roi_pool(features, rois, 3x3, classes=C [, sampling=2] [, aligned=true])`: R-FCN's
    k x k grid, and the C output maps (the input has k² x C)."""

    classes: Pos


class RoiPlaced(OpParams):
    """What a RoI pooling's builder is given: its parameters and the spatial scale of its
    features (1 / their receptive-field jump)."""

    params: RoiPoolParams
    scale: float


def rois_of(shape: Shape, op: str) -> int:
    """K, the regions of each image of a RoI set of this per-sample shape (K x 4 or K x 5)."""
    if len(shape) != 2 or shape[1] not in BOX_FIELDS or not isinstance(shape[0], int):
        raise ShapeError(
            f"{op} reads its regions as K x 4 boxes (x1, y1, x2, y2), or K x 5 with a score; "
            f"got {fmt_shape(shape)}",
            hint="give it the output of proposals, or an input such as rois: 16x4",
        )
    return shape[0]


def _grid(p: RoiPoolParams, ins: Sequence[Shape], op: str) -> tuple[int, int, int]:
    """(K, C, H x W) of the features and the RoI set, checked: maps of known size that hold
    the grid of bins."""
    if len(ins[0]) != 3:
        raise ShapeError(
            f"{op} pools feature maps (C x H x W), got {fmt_shape(ins[0])}",
            hint="give it the backbone's maps, before any dense stage or flatten",
        )
    c, h, w = ins[0]
    if not (isinstance(c, int) and isinstance(h, int) and isinstance(w, int)):
        raise ShapeError(
            f"{op} pools maps of known size, got {fmt_shape(ins[0])}",
            hint="give the network an input of fixed size",
        )
    ph, pw = p.size
    if ph > h or pw > w:
        raise ShapeError(
            f"{op}'s grid of {ph}x{pw} bins is larger than its {h}x{w} maps: bins would repeat "
            "cells",
            hint=f"use a grid of at most {h}x{w}, or pool from an earlier, larger map",
        )
    return rois_of(ins[1], op), c, h * w


def _roi_shape(p: RoiPoolParams, ins: Sequence[Shape]) -> Shape:
    k, c, _ = _grid(p, ins, "roi pooling")
    return (k, c, *p.size)


def _ps_shape(p: PsRoiPoolParams, ins: Sequence[Shape]) -> Shape:
    k, c, _ = _grid(p, ins, "ps_roi_pool")
    bins = p.size[0] * p.size[1]
    if c != bins * p.classes:
        raise ShapeError(
            f"ps_roi_pool's {p.size[0]}x{p.size[1]} bins of {p.classes} maps each need "
            f"{bins * p.classes} input maps, got {c}",
            hint=f"end the features with conv {bins * p.classes} 1x1",
        )
    return (k, p.classes, *p.size)


def _pool_cost(p: RoiPoolParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """At most every cell of the maps per region: a region's size is the data's."""
    k, c, cells = _grid(p, ins, "roi_pool")
    return Cost(macs=k * c * cells)


def _align_cost(p: RoiAlignParams, ins: Sequence[Shape], out: Shape) -> Cost:
    """Each output value: sampling² bilinear samples of four cells."""
    k, c, ph, pw = (int(d) for d in out)
    return Cost(macs=k * c * ph * pw * p.sampling**2 * TAPS)


def region_rf(p: Any, rfs: Sequence[RF]) -> RF:
    """A pooled unit sees its region's bin, grown by the features' field."""
    return replace(rfs[0], region=True, whole=False)


def _placed(p: RoiPoolParams, rfs: Sequence[RF], ins: Sequence[Shape], image: Shape) -> RoiPlaced:
    """The spatial scale: one over the features' jump, the same along H and W."""
    jh, jw = rfs[0].jump
    if jh != jw or rfs[0].line:
        raise ShapeError(
            f"RoI pooling needs maps with one stride along H and W, these have {jh:g}x{jw:g}",
            hint="pool from maps whose strides are square",
        )
    return RoiPlaced(params=p, scale=1.0 / jh)


def _register(name: str, params: type[RoiPoolParams], shape: Any, cost: Any, doc: str) -> None:
    """A RoI pooling: two inputs (maps, then a RoI set), regions out, its scale placed."""
    register(
        OpDef(
            name=name,
            params=params,
            positional=("size",),
            shape=shape,
            arity=2,
            rf=region_rf,
            cost=cost,
            output="tensor",
            reads_rois=True,
            placed=_placed,
            doc=doc,
        )
    )


_register(
    "roi_pool",
    RoiPoolParams,
    _roi_shape,
    _pool_cost,
    "`roi_pool(features, rois, 7x7)`: Fast R-CNN's RoI max pooling, each region's grid of "
    "bins the max of the cells it covers (ONNX MaxRoiPool); the spatial scale is the "
    "features' stride.",
)
_register(
    "roi_align",
    RoiAlignParams,
    _roi_shape,
    _align_cost,
    "`roi_align(features, rois, 7x7, sampling=2, aligned=true)`: RoIAlign, each bin the mean "
    "of sampling² bilinear samples (ONNX RoiAlign, mode avg).",
)
_register(
    "ps_roi_pool",
    PsRoiPoolParams,
    _ps_shape,
    _align_cost,
    "`ps_roi_pool(features, rois, 3x3, classes=C)`: R-FCN's position-sensitive RoI pooling, "
    "bin (i, j) of map c averaged from input map c·k² + i·k + j.",
)
