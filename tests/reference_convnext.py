"""ConvNeXt-T in plain PyTorch, laid out as torchvision's `convnext_tiny` (torchvision is not
installed here: this is written from its source's structure), for tests/test_words_norm.py.

The layers are torchvision's: `LayerNorm2d` (a LayerNorm over the channels of channels-first
maps), each block's 1x1 convolutions as `nn.Linear` on channels-last maps between two
permutes, a layer scale that is a `(C, 1, 1)` parameter of the block itself, and
`StochasticDepth` in mode "row", whose rate rises linearly from 0 to
`stochastic_depth_prob` over the 18 blocks (or is the same in every block, as
specs/convnext_t.net has it, with `ramp=False`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPS = 1e-6  # every layer norm's, as torchvision's
STAGES = ((96, 3), (192, 3), (384, 9), (768, 3))  # (channels, blocks)


class LayerNorm2d(nn.LayerNorm):
    """torchvision.models.convnext.LayerNorm2d: the channels last, normalized, and back."""

    def forward(self, x: Tensor) -> Tensor:
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)  # (B, C, H, W)


class Permute(nn.Module):
    def __init__(self, dims: list[int]) -> None:
        super().__init__()
        self.dims = dims

    def forward(self, x: Tensor) -> Tensor:
        return torch.permute(x, self.dims)


class StochasticDepth(nn.Module):
    """torchvision.ops.StochasticDepth, mode "row": one Bernoulli draw per sample."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0.0:
            return x
        survival = 1.0 - self.p
        size = [x.shape[0]] + [1] * (x.ndim - 1)
        noise = torch.empty(size, dtype=x.dtype, device=x.device).bernoulli_(survival)
        if survival > 0.0:
            noise.div_(survival)
        return x * noise


class CNBlock(nn.Module):
    """torchvision's CNBlock: depthwise 7x7, LayerNorm, Linear 4C, GELU, Linear C, scaled."""

    def __init__(self, dim: int, layer_scale: float, sd_prob: float) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim, bias=True),
            Permute([0, 2, 3, 1]),
            nn.LayerNorm(dim, eps=EPS),
            nn.Linear(dim, 4 * dim, bias=True),
            nn.GELU(),
            nn.Linear(4 * dim, dim, bias=True),
            Permute([0, 3, 1, 2]),
        )
        self.layer_scale = nn.Parameter(torch.ones(dim, 1, 1) * layer_scale)
        self.stochastic_depth = StochasticDepth(sd_prob)

    def forward(self, x: Tensor) -> Tensor:
        result = self.layer_scale * self.block(x)
        result = self.stochastic_depth(result)
        return result + x


class ConvNeXtTiny(nn.Module):
    def __init__(
        self,
        num_classes: int = 1000,
        stochastic_depth_prob: float = 0.1,
        layer_scale: float = 1e-6,
        ramp: bool = True,
    ) -> None:
        super().__init__()
        first = STAGES[0][0]
        stem = nn.Sequential(
            nn.Conv2d(3, first, kernel_size=4, stride=4, padding=0, bias=True),
            LayerNorm2d(first, eps=EPS),
        )
        layers: list[nn.Module] = [stem]
        total = sum(n for _, n in STAGES)
        block_id = 0
        for i, (dim, n) in enumerate(STAGES):
            stage = []
            for _ in range(n):
                rate = stochastic_depth_prob * (block_id / (total - 1.0) if ramp else 1.0)
                stage.append(CNBlock(dim, layer_scale, rate))
                block_id += 1
            layers.append(nn.Sequential(*stage))
            if i + 1 < len(STAGES):
                out = STAGES[i + 1][0]
                layers.append(
                    nn.Sequential(
                        LayerNorm2d(dim, eps=EPS), nn.Conv2d(dim, out, kernel_size=2, stride=2)
                    )
                )
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last = STAGES[-1][0]
        self.classifier = nn.Sequential(
            LayerNorm2d(last, eps=EPS), nn.Flatten(1), nn.Linear(last, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.avgpool(self.features(x)))


def in_spec_order(model: nn.Module) -> list[Tensor]:
    """The model's parameters in the order specs/convnext_t.net declares its layers.

    torchvision's layer scale is a parameter of the block itself, so `named_parameters`
    gives it before the block's layers; the spec's `layer_scale` comes after them. Each is
    held back until the block's own layers are done.
    """
    ordered: list[Tensor] = []
    held: tuple[str, Tensor] | None = None
    for name, param in model.named_parameters():
        if held is not None and not name.startswith(held[0]):
            ordered.append(held[1])
            held = None
        if name.endswith(".layer_scale"):
            held = (name.removesuffix("layer_scale"), param)
        else:
            ordered.append(param)
    if held is not None:
        ordered.append(held[1])
    return ordered
