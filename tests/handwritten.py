"""Networks written by hand, the way most people write them in PyTorch: the references that
the generated modules are compared with (tests/test_lower.py) and timed against
(benchmarks/bench_train_step.py)."""

from __future__ import annotations

import itertools

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


# ---- the zoo of issue 10: mobile nets, squeeze-and-excitation, dense prediction -----------


def _conv_bn(cin: int, c: int, k: int, stride: int, groups: int, act: nn.Module) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: a convolution without bias, batchnorm, activation."""
    conv = nn.Conv2d(cin, c, k, stride, (k - 1) // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(c), act)


class InvertedResidual(nn.Module):
    """MobileNet-v2's block: expand 1x1, depthwise 3x3, project 1x1 (linear), a residual
    connection when the shape is kept."""

    def __init__(self, cin: int, c: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1, 1, nn.ReLU6()))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, hidden, nn.ReLU6()),
            nn.Conv2d(hidden, c, 1, bias=False),
            nn.BatchNorm2d(c),
        ]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == c

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return x + out if self.residual else out


class HandMobileNetV2(nn.Module):
    """torchvision's mobilenet_v2 (width 1.0): 3,504,872 parameters."""

    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )  # fmt: skip  (t, c, n, s)

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, 1, nn.ReLU6())]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1, 1, nn.ReLU6()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class SqueezeExcitation(nn.Module):
    """Hu et al.'s gate: global average, a 1x1 bottleneck, a sigmoid per channel, times the
    input (a Cx1x1 gate broadcast over CxHxW)."""

    def __init__(self, c: int, squeeze: int, act: nn.Module) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.act = act
        self.fc2 = nn.Conv2d(squeeze, c, 1)

    def forward(self, x: Tensor) -> Tensor:
        gate = self.fc2(self.act(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * torch.sigmoid(gate)


class MBConv(nn.Module):
    """EfficientNet's block: MobileNet-v2's with silu and a squeeze-and-excitation gate
    (squeezed to a quarter of the block's input channels). Stochastic depth is left out: it
    has no parameters and is the identity at inference."""

    def __init__(self, cin: int, c: int, k: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = cin * t
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1, 1, nn.SiLU()))
        layers += [
            _conv_bn(hidden, hidden, k, stride, hidden, nn.SiLU()),
            SqueezeExcitation(hidden, max(1, cin // 4), nn.SiLU()),
            nn.Conv2d(hidden, c, 1, bias=False),
            nn.BatchNorm2d(c),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == c

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.block(x)
        return x + out if self.residual else out


class HandEfficientNetB0(nn.Module):
    """torchvision's efficientnet_b0: 5,288,548 parameters."""

    STAGES = (
        (1, 3, 1, 16, 1),
        (6, 3, 2, 24, 2),
        (6, 5, 2, 40, 2),
        (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3),
        (6, 5, 2, 192, 4),
        (6, 3, 1, 320, 1),
    )  # fmt: skip (t, k, s, c, n)

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2, 1, nn.SiLU())]
        cin = 32
        for t, k, s, c, n in self.STAGES:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1, 1, nn.SiLU()))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, classes))

    def forward(self, x: Tensor) -> Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


class SEBottleneck(nn.Module):
    """SE-ResNet-50's block: ResNet-50's bottleneck with a gate (reduction 16) on the residual
    branch before the sum."""

    def __init__(self, cin: int, c: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn(cin, c, 1, 1, 1, nn.ReLU()),
            _conv_bn(c, c, 3, stride, 1, nn.ReLU()),
            nn.Conv2d(c, c * 4, 1, bias=False),
            nn.BatchNorm2d(c * 4),
            SqueezeExcitation(c * 4, c * 4 // 16, nn.ReLU()),
        )
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or cin != c * 4:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, c * 4, 1, stride, bias=False), nn.BatchNorm2d(c * 4)
            )

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.body(x) + self.downsample(x))


class HandSEResNet50(nn.Module):
    """SE-ResNet-50 (Hu et al. 2018) on torchvision's ResNet-50: 28,088,024 parameters."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = _conv_bn(3, 64, 7, 2, 1, nn.ReLU())
        cin, stages = 64, []
        for i, (c, n) in enumerate(((64, 3), (128, 4), (256, 6), (512, 3))):
            blocks = []
            for j in range(n):
                blocks.append(SEBottleneck(cin, c, 2 if i > 0 and j == 0 else 1))
                cin = c * 4
            stages.append(nn.Sequential(*blocks))
        self.layers = nn.Sequential(*stages)
        self.fc = nn.Linear(2048, classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.layers(F.max_pool2d(self.stem(x), 3, 2, 1))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _double_conv(cin: int, c: int) -> nn.Sequential:
    """Two unpadded 3x3 convolutions, each followed by a ReLU: 4 pixels lost per side pair."""
    return nn.Sequential(nn.Conv2d(cin, c, 3), nn.ReLU(), nn.Conv2d(c, c, 3), nn.ReLU())


def _centre_crop(x: Tensor, size: int) -> Tensor:
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    return x[:, :, top : top + size, left : left + size]


class UpLevel(nn.Module):
    """A U-Net decoder level: a 2x2 up-convolution halving the channels, the encoder's maps
    centre-cropped to its size and stacked before it, two unpadded convolutions."""

    def __init__(self, cin: int, c: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, c, 2, stride=2)
        self.conv = _double_conv(cin, c)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        x = self.up(x)
        out: Tensor = self.conv(torch.cat([_centre_crop(skip, x.shape[2]), x], 1))
        return out


class HandUNet(nn.Module):
    """The U-Net of Ronneberger, Fischer & Brox (2015): unpadded convolutions, 2x2 max pools,
    2x2 up-convolutions halving the channels, the encoder's maps centre-cropped and
    concatenated; 1x572x572 in, 2x388x388 out."""

    def __init__(self, classes: int = 2, base: int = 64) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(5)]  # 64 .. 1024
        self.down = nn.ModuleList(
            _double_conv(cin, c) for cin, c in zip([1, *widths[:-1]], widths, strict=True)
        )
        self.ups = nn.ModuleList(UpLevel(cin, c) for cin, c in itertools.pairwise(widths[::-1]))
        self.head = nn.Conv2d(base, classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        skips = []
        for i, down in enumerate(self.down):
            x = down(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, skip in zip(self.ups, reversed(skips[:-1]), strict=True):
            x = up(x, skip)
        out: Tensor = self.head(x)
        return out


class HandAutoencoder(nn.Module):
    """specs/autoencoder.net written by hand: 1x28x28 -> 8x7x7 -> 1x28x28."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Upsample(scale_factor=2), nn.Conv2d(16, 1, 3, padding=1), nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.decoder(self.encoder(x))
        return out


# ---- timing ----------------------------------------------------------------------------------
