"""Random deformations of a batch, on its device, drawn from an explicit generator.

Rotation, scale, squeeze, shift and shear form one affine map per image; the elastic field of
Simard, Steinkraus & Platt (2003) is added to the same sampling grid, so each image is
resampled once (one bilinear blur, not two). Displacements are uniform in [-1, 1] per
pixel, smoothed by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels.
Images are expected in [0, 1] with background 0: what moves in from outside is background.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from netspec.trainspec import Augment


def augment(x: torch.Tensor, spec: Augment, gen: torch.Generator) -> torch.Tensor:
    """A freshly deformed copy of ``x`` ``(B, C, H, W)``; ``x`` itself if nothing is enabled."""
    if not spec.enabled:
        return x
    b, _, h, w = x.shape
    grid = F.affine_grid(_affine(b, h, w, spec, gen, x), [b, 1, h, w], align_corners=False)
    if spec.elastic_alpha:
        field = _elastic(b, h, w, spec.elastic_alpha, spec.elastic_sigma, gen, x)
        # pixels -> normalized coordinates (the grid spans 2 over W pixels)
        grid = grid + field * torch.tensor([2.0 / w, 2.0 / h], device=x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _uniform(
    n: int, low: float, high: float, gen: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    u = torch.rand(n, generator=gen, device=gen.device, dtype=torch.float32)
    return (low + (high - low) * u).to(like.device)


def _affine(
    b: int, h: int, w: int, spec: Augment, gen: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """``(B, 2, 3)`` maps from output to input coordinates, as ``affine_grid`` wants."""
    r = math.radians(spec.rotate or 0.0)
    s = math.radians(spec.shear or 0.0)
    low, high = spec.scale or (1.0, 1.0)
    t = spec.shift or 0.0
    angle, shear = _uniform(b, -r, r, gen, like), _uniform(b, -s, s, gen, like)
    scale = _uniform(b, low, high, gen, like)
    tx, ty = _uniform(b, -t, t, gen, like), _uniform(b, -t, t, gen, like)
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map in pixels, about the centre: A = R(angle) @ Shear_x(shear) @ scale @ Sq,
    # Sq = diag(k, 1/k) squeezing (LeCun et al. 1998): one axis shrinks as the other grows
    a = torch.stack([cos, cos * torch.tan(shear) - sin, sin, sin * torch.tan(shear) + cos], 1)
    a = (a * scale[:, None]).view(b, 2, 2)
    if spec.squeeze is not None:  # drawn last, so that the other draws stay as they were
        k = _uniform(b, *spec.squeeze, gen, like)
        a = a * torch.stack([k, 1 / k], 1)[:, None, :]
    inv = torch.linalg.inv(a)
    offset = -(inv @ torch.stack([tx, ty], 1)[:, :, None])  # undo the shift, in pixels
    half = torch.tensor([w / 2.0, h / 2.0], device=like.device)
    # to normalized coordinates: theta = D^-1 A^-1 D, D = diag(W/2, H/2)
    theta = inv * half[None, None, :] / half[None, :, None]
    return torch.cat([theta, offset / half[None, :, None]], 2)


def _gaussian(sigma: float, size: int, like: torch.Tensor) -> torch.Tensor:
    radius = max(1, min(math.ceil(3 * sigma), size - 1))
    k = torch.arange(-radius, radius + 1, dtype=torch.float32, device=like.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    return k / k.sum()


def _elastic(
    b: int, h: int, w: int, alpha: float, sigma: float, gen: torch.Generator, like: torch.Tensor
) -> torch.Tensor:
    """``(B, H, W, 2)`` smooth random displacements in pixels (x, y)."""
    noise = torch.rand(b * 2, 1, h, w, generator=gen, device=gen.device) * 2 - 1
    noise = noise.to(like.device)
    kx = _gaussian(sigma, w, like)
    ky = _gaussian(sigma, h, like)
    noise = F.conv2d(noise, kx.view(1, 1, 1, -1), padding=(0, len(kx) // 2))
    noise = F.conv2d(noise, ky.view(1, 1, -1, 1), padding=(len(ky) // 2, 0))
    return (alpha * noise).view(b, 2, h, w).permute(0, 2, 3, 1)


MIN_KEPT = 0.5  # a box cut by the border stays labelled while half its area is inside


def augment_boxes(
    x: torch.Tensor, boxes: torch.Tensor, spec: Augment, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scenes ``(B, C, H, W)`` scaled about their centre and shifted, and their padded boxes
    ``(B, K, 5)`` (class, x1, y1, x2, y2 in pixels) moved with them: a box is cut to the
    image, and dropped (class -1) once less than half of it is left inside. No flips: a
    mirrored digit is not a digit."""
    if spec.scale is None and spec.shift is None:
        return x, boxes
    b, _, h, w = x.shape
    low, high = spec.scale or (1.0, 1.0)
    t = spec.shift or 0.0
    scale = _uniform(b, low, high, gen, x)
    tx, ty = _uniform(b, -t, t, gen, x), _uniform(b, -t, t, gen, x)
    # output -> input, in normalized coordinates: u_in = (u_out - shift) / scale
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1 / scale
    theta[:, 0, 2] = -tx / (w / 2.0) / scale
    theta[:, 1, 2] = -ty / (h / 2.0) / scale
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    moved_x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    centre = torch.tensor([w / 2.0, h / 2.0] * 2, device=x.device)
    shift = torch.stack([tx, ty, tx, ty], 1)[:, None, :]
    corners = (boxes[..., 1:] - centre) * scale[:, None, None] + centre + shift
    limit = torch.tensor([w, h, w, h], device=x.device, dtype=corners.dtype)
    cut = torch.minimum(corners.clamp(min=0), limit)
    area = (corners[..., 2:] - corners[..., :2]).clamp(min=0).prod(-1)
    left = (cut[..., 2:] - cut[..., :2]).clamp(min=0).prod(-1)
    kept = (boxes[..., 0] >= 0) & (left >= MIN_KEPT * area) & (left > 0)
    cls = torch.where(kept, boxes[..., 0], torch.full_like(boxes[..., 0], -1.0))
    return moved_x, torch.cat([cls[..., None], cut], -1)
