"""ESPCN (Shi et al., 2016) for an upscale factor of 3 on one channel, in plain PyTorch, as
the paper describes it and as one writes it without netspec: specs/espcn.net is the same
network, and tests/test_words_resample.py checks that the two count the same parameters and
compute the same outputs on the same weights."""

from __future__ import annotations

from torch import Tensor, nn


class ESPCN(nn.Module):
    """Features at the low resolution (5x5 then 3x3, tanh), r*r maps per channel, and the
    periodic shuffling that makes them one map r times higher and wider."""

    def __init__(self, upscale: int = 3, channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 64, 5, padding=2),  # (B, 64, H, W)
            nn.Tanh(),
            nn.Conv2d(64, 32, 3, padding=1),  # (B, 32, H, W)
            nn.Tanh(),
        )
        self.subpixel = nn.Conv2d(32, channels * upscale * upscale, 3, padding=1)  # (B, r*r, H, W)
        self.shuffle = nn.PixelShuffle(upscale)  # (B, channels, rH, rW)

    def forward(self, x: Tensor) -> Tensor:
        return self.shuffle(self.subpixel(self.features(x)))
