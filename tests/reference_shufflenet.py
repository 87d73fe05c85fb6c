"""ShuffleNet-v2 x1.0 in plain PyTorch, as torchvision lays it out (torchvision is not a
dependency): the reference specs/shufflenet_v2.net is checked against, parameter for
parameter and output for output (tests/test_words_blocks.py).

Ma, Zhang, Zheng & Sun (2018), "ShuffleNet V2: practical guidelines for efficient CNN
architecture design", ECCV. Each unit splits its maps in two halves (`chunk`), convolves
one of them (1x1, depthwise 3x3, 1x1) and concatenates it to the other, then shuffles the
maps of the two halves together; a down-sampling unit convolves both halves of a copy
instead, one with a depthwise 3x3 of stride 2 first. 2,278,604 parameters.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


def depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, bias=False, groups=channels)


class InvertedResidual(nn.Module):
    """torchvision's `shufflenetv2.InvertedResidual`: `branch1` only where the stride is 2."""

    def __init__(self, inp: int, oup: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = oup // 2
        if stride > 1:
            self.branch1 = nn.Sequential(
                depthwise(inp, stride),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, half, 1, bias=False),
                nn.BatchNorm2d(half),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if stride > 1 else half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
            depthwise(half, stride),
            nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False),
            nn.BatchNorm2d(half),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """x1.0: stages of 4, 8 and 4 units, 116, 232 and 464 maps, a 1024-wide last conv."""

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True)
        )
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stages, inp = [], 24
        for repeats, oup in zip((4, 8, 4), (116, 232, 464), strict=True):
            units = [InvertedResidual(inp, oup, 2)]
            units += [InvertedResidual(oup, oup, 1) for _ in range(repeats - 1)]
            stages.append(nn.Sequential(*units))
            inp = oup
        self.stage2, self.stage3, self.stage4 = stages
        self.conv5 = nn.Sequential(
            nn.Conv2d(inp, 1024, 1, bias=False), nn.BatchNorm2d(1024), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(1024, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.conv1(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        x = self.conv5(x).mean([2, 3])  # global average pooling
        return self.fc(x)
