"""Random deformations of a batch, on its device, drawn from an explicit generator.

Rotation, scale, squeeze, shift and shear form one affine map per image; the elastic field of
Simard, Steinkraus & Platt (2003) is added to the same sampling grid, and the random resized
crop, the whole-pixel random crop and the mirror compose with it, so each image is
resampled once (one bilinear blur, not two). Displacements are uniform in [-1, 1] per
pixel, smoothed by a Gaussian of ``sigma`` pixels and scaled by ``alpha`` pixels. The colour
jitter then scales brightness, contrast and saturation, in that order, as torchvision's
ColorJitter does each. Images are expected in [0, 1] with background 0: what moves in from
outside is background. Each augmentation draws its numbers only when it is on, after those
before it, so a section that adds none draws what it always drew.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from netspec.trainspec import CROP_RATIO, Augment


def augment(
    x: torch.Tensor, spec: Augment, gen: torch.Generator, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """A freshly deformed copy of ``x`` ``(B, C, H, W)`` at ``size`` (H, W; None: x's own,
    which only a random resized crop changes); ``x`` itself if nothing is enabled."""
    if not spec.enabled:
        return x
    if spec.geometric:
        x = _resample(x, spec, gen, size or (x.shape[2], x.shape[3]))
    if any(v is not None for v in (spec.brightness, spec.contrast, spec.saturation)):
        x = _jitter(x, spec, gen)
    return x


def _resample(
    x: torch.Tensor, spec: Augment, gen: torch.Generator, size: tuple[int, int]
) -> torch.Tensor:
    """The images moved: one sampling grid of ``size`` per image, from the affine map, the
    elastic field and the crops and mirror (in the source image's coordinates)."""
    b, (h, w) = x.shape[0], size
    theta = _affine(b, h, w, spec, gen, x)
    field = None
    if spec.elastic_alpha:
        field = _elastic(b, h, w, spec.elastic_alpha, spec.elastic_sigma, gen, x)
        # pixels -> normalized coordinates (the grid spans 2 over W pixels)
        field = field * torch.tensor([2.0 / w, 2.0 / h], device=x.device)
    if spec.crop_scale is not None or spec.crop_pad is not None or spec.flip is not None:
        scale, offset = _crop(b, (x.shape[2], x.shape[3]), size, spec, gen, x)
        theta = theta * scale[:, :, None] + torch.cat(
            [torch.zeros_like(theta[:, :, :2]), offset[:, :, None]], 2
        )
        field = field * scale[:, None, None, :] if field is not None else None
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    if field is not None:
        grid = grid + field
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


CROP_TRIES = 10  # draws of a random resized crop before its fallback, as torchvision's


def _crop(
    b: int,
    src: tuple[int, int],
    out: tuple[int, int],
    spec: Augment,
    gen: torch.Generator,
    like: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, ``(B, 2)`` each: the factor from the cut (and mirrored) box's normalized
    coordinates to the source image's (x then y; negative x mirrors), and the box's centre
    there. A random resized crop draws an area share and a log aspect ratio up to
    `CROP_TRIES` times and takes the first box that fits, else the whole image with its
    ratio clamped; its corner samples fall on its corner pixels' centres (as resizing with
    aligned corners), so that no sample of a box reads the zeros outside the image. A
    random crop then moves the box by whole pixels."""
    h, w = src
    fw = torch.ones(b, device=like.device)
    fh = torch.ones(b, device=like.device)
    cx = torch.zeros(b, device=like.device)
    cy = torch.zeros(b, device=like.device)
    if spec.crop_scale is not None:
        fw, fh = _crop_size(b, h, w, spec, gen, like)
        inside_w, inside_h = 1 - 1 / w, 1 - 1 / h  # the span of pixel centres
        cx = (_uniform(b, 0, 1, gen, like) * 2 - 1) * (1 - fw) * inside_w
        cy = (_uniform(b, 0, 1, gen, like) * 2 - 1) * (1 - fh) * inside_h
        fw = fw * inside_w / (1 - 1 / out[1]) if out[1] > 1 else fw
        fh = fh * inside_h / (1 - 1 / out[0]) if out[0] > 1 else fh
    if spec.crop_pad is not None:
        pad = spec.crop_pad
        moves = (
            torch.floor(_uniform(2 * b, 0, 1, gen, like) * (2 * pad + 1)).clamp(max=2 * pad) - pad
        )
        cx = cx + moves[:b] * 2 / w
        cy = cy + moves[b:] * 2 / h
    if spec.flip is not None:
        fw = torch.where(_uniform(b, 0, 1, gen, like) < spec.flip, -fw, fw)
    return torch.stack([fw, fh], 1), torch.stack([cx, cy], 1)


def _crop_size(
    b: int, h: int, w: int, spec: Augment, gen: torch.Generator, like: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random resized crop's width and height as shares of the image's, ``(B,)`` each."""
    assert spec.crop_scale is not None
    area = _uniform(b * CROP_TRIES, *spec.crop_scale, gen, like).view(b, CROP_TRIES)
    ratios = spec.crop_ratio or CROP_RATIO
    low, high = (math.log(r) for r in ratios)
    ratio = torch.exp(_uniform(b * CROP_TRIES, low, high, gen, like)).view(b, CROP_TRIES)
    fw = torch.sqrt(area * ratio * h / w)  # the box's width over the image's
    fh = torch.sqrt(area / ratio * w / h)
    fits = (fw <= 1) & (fh <= 1)
    first = fits.int().argmax(1, keepdim=True)
    aspect = w / h  # the fallback: the whole image, its ratio clamped to the range
    whole_w = min(1.0, h * ratios[1] / w) if aspect > ratios[1] else 1.0
    whole_h = min(1.0, w / ratios[0] / h) if aspect < ratios[0] else 1.0
    found = fits.any(1)
    fw = torch.where(found, fw.gather(1, first)[:, 0], torch.full_like(fw[:, 0], whole_w))
    fh = torch.where(found, fh.gather(1, first)[:, 0], torch.full_like(fh[:, 0], whole_h))
    return fw, fh


GREY = (0.299, 0.587, 0.114)  # luma weights, as torchvision's rgb_to_grayscale


def _jitter(x: torch.Tensor, spec: Augment, gen: torch.Generator) -> torch.Tensor:
    """Brightness, contrast and saturation scaled by factors drawn within 1 plus or minus
    each (at least 0), clamped to [0, 1]; saturation only for colour images."""
    b = x.shape[0]

    def factor(amount: float) -> torch.Tensor:
        return _uniform(b, max(0.0, 1 - amount), 1 + amount, gen, x).view(b, 1, 1, 1)

    if spec.brightness is not None:
        x = (x * factor(spec.brightness)).clamp(0, 1)
    if spec.contrast is not None:
        f = factor(spec.contrast)
        x = (f * x + (1 - f) * _grey(x).mean((1, 2, 3), keepdim=True)).clamp(0, 1)
    if spec.saturation is not None and x.shape[1] == 3:
        f = factor(spec.saturation)
        x = (f * x + (1 - f) * _grey(x)).clamp(0, 1)
    return x


def _grey(x: torch.Tensor) -> torch.Tensor:
    """``(B, 1, H, W)``: the luma of colour images, grey images as they are."""
    if x.shape[1] != 3:
        return x.mean(1, keepdim=True)
    weights = torch.tensor(GREY, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(1, keepdim=True)


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
