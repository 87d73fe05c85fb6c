"""Networks written by hand, the way most people write them in PyTorch: the references that
the generated modules are compared with (tests/test_lower.py) and timed against
(benchmarks/bench_train_step.py)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class HandLeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return self.fc3(F.relu(self.fc2(x)))


class BasicBlock(nn.Module):
    def __init__(self, cin: int, c: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, c, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != c:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c)
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.downsample(x))


class HandResNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = BasicBlock(16, 16, 1)
        self.layer2 = BasicBlock(16, 32, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class HandInception(nn.Module):
    """GoogLeNet's inception module (3a's widths) on 192 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(192, 64, 1)
        self.b2 = nn.Sequential(nn.Conv2d(192, 96, 1), nn.ReLU(), nn.Conv2d(96, 128, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(192, 16, 1), nn.ReLU(), nn.Conv2d(16, 32, 5, padding=2))
        self.b4 = nn.Conv2d(192, 32, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, 1, 1)
        branches = [self.b1(x), self.b2(x), self.b3(x), self.b4(pooled)]
        return torch.cat([F.relu(b) for b in branches], 1)


class HandDenseBlock(nn.Module):
    """Three DenseNet-BC layers (growth 4, bottleneck 16) on 8 maps."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Sequential(
                nn.BatchNorm2d(8 + 4 * i),
                nn.ReLU(),
                nn.Conv2d(8 + 4 * i, 16, 1, bias=False),
                nn.BatchNorm2d(16),
                nn.ReLU(),
                nn.Conv2d(16, 4, 3, padding=1, bias=False),
            )
            for i in range(3)
        )

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = torch.cat([x, layer(x)], 1)
        return x


class HandResNet18(nn.Module):
    """torchvision's ResNet-18 layout, written as most people write it."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        widths, cin, stages = (64, 128, 256, 512), 64, []
        for i, c in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(cin, c, stride), BasicBlock(c, c, 1)))
            cin = c
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(512, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# ---- timing ----------------------------------------------------------------------------------
