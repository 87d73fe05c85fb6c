"""HOG's `orientation_bins` and `block_norm` in torch (netspec.ops.hog says what each
computes), in operators that trace to standard ONNX: no atan2, which ONNX lacks. Its builders
are this module's ``BUILDERS``, which `netspec.lower.discover` collects.

A pixel's bin is found by comparing its orientation with each bin's lower boundary φ_k
through a sign, not an angle: the gradient (gx, gy) turned into the upper half-plane
(θ = atan2(gy, gx) mod 180° in [0, 180)) is at or past φ_k exactly where
sin(θ - φ_k) = gy·cos φ_k - gx·sin φ_k >= 0, and bin k holds the pixels past φ_k and not
past φ_k+1. Two products per bin, exact where the angle is (a horizontal gradient of either
sign is in bin 0, a vertical one at 90°), and within float32's rounding of scikit-image's
arctan2 elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from netspec.ir import Shape
from netspec.lower.lowered import Builder, Call, Lowered
from netspec.ops.hog import HYSTERESIS, BlockNormParams, OrientationBinsParams


class OrientationBins(nn.Module):
    """Gradients ``(N, 2, H, W)`` (gx, gy) to ``(N, bins, H, W)``: each pixel's gradient
    magnitude in the bin of its unsigned orientation, 0 in the others."""

    # (1, bins, 1, 1) each: cos and sin of bin k's lower boundary, phi_k = 180k/bins degrees
    cos: Tensor
    sin: Tensor

    def __init__(self, bins: int) -> None:
        super().__init__()
        self.bins = bins
        lower = [math.pi * k / bins for k in range(bins)]
        cos = torch.tensor([math.cos(a) for a in lower]).view(1, bins, 1, 1)
        sin = torch.tensor([math.sin(a) for a in lower]).view(1, bins, 1, 1)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        gx, gy = x[:, :1], x[:, 1:]  # (N, 1, H, W) each
        square = gx * gx + gy * gy
        # sqrt's derivative is infinite at 0: where there is no gradient (a flat region), the
        # magnitude is 0 without it, so that the derivative stays finite (`show`'s pictures)
        some = square > 0
        root = torch.sqrt(torch.where(some, square, torch.ones_like(square)))
        magnitude = torch.where(some, root, torch.zeros_like(square))
        # turned into [0, 180) degrees: gy > 0, or gy = 0 and gx >= 0 (0 and 180 are bin 0)
        turn = (gy < 0) | ((gy == 0) & (gx < 0))
        u, v = torch.where(turn, -gx, gx), torch.where(turn, -gy, gy)
        past = v * self.cos - u * self.sin >= 0  # (N, bins, H, W): theta >= phi_k
        after = torch.cat([past[:, 1:], torch.zeros_like(past[:, :1])], 1)  # theta >= phi_k+1
        return magnitude * (past & ~after).to(x.dtype)

    def extra_repr(self) -> str:
        return f"{self.bins}"


class BlockNorm(nn.Module):
    """Cells ``(N, C, H, W)`` to blocks ``(N, C*kh*kw, H-kh+1, W-kw+1)``: at each cell, the
    block of kh x kw cells from it, cell row by cell row, each cell's C values, normalized
    over the block (`l2hys`, `l2`, `l1` or `l1sqrt`, with scikit-image's formulas)."""

    def __init__(self, block: tuple[int, int], method: str = "l2hys", eps: float = 1e-5) -> None:
        super().__init__()
        self.block, self.method, self.eps = block, method, eps

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.block
        # the cell (i, j) of every block: a shifted view, its end counted from the far side
        # so that it works for any H and W
        cells = [
            x[:, :, i : (i - kh + 1) or None, j : (j - kw + 1) or None]
            for i in range(kh)
            for j in range(kw)
        ]
        v = torch.cat(cells, 1)  # (N, C*kh*kw, H-kh+1, W-kw+1)
        if self.method in ("l1", "l1sqrt"):
            out = v / (v.abs().sum(1, keepdim=True) + self.eps)
            return out.sqrt() if self.method == "l1sqrt" else out
        out = self._l2(v)
        return self._l2(out.clamp(max=HYSTERESIS)) if self.method == "l2hys" else out

    def _l2(self, v: Tensor) -> Tensor:
        return v / torch.sqrt((v * v).sum(1, keepdim=True) + self.eps**2)

    def extra_repr(self) -> str:
        return f"{self.block}, method={self.method!r}, eps={self.eps}"


def _orientation_bins(p: OrientationBinsParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(OrientationBins, (p.bins,)))


def _block_norm(p: BlockNormParams, ins: Sequence[Shape], out: Shape) -> Lowered:
    return Lowered(Call(BlockNorm, (p.block,), (("method", p.method), ("eps", p.eps))))


BUILDERS: dict[str, Builder] = {
    "orientation_bins": _orientation_bins,
    "block_norm": _block_norm,
}
