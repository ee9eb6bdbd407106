"""ResNet-20 for CIFAR.

- ``width="thin"``: He et al. (2016) §4.2: 16/32/64 channels, option-A shortcuts
  (parameter-free: stride-2 subsample + zero channel padding), ~0.27 M parameters.
- ``width="wide"``: SNN Calibration's ResNet-20: 64/128/256 channels, 1x1 conv + BN
  projection shortcuts when the shape changes.

Block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``.
ReLU call sites: 1 (stem) + 9 blocks x 2 = 19.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

WIDTHS: dict[str, tuple[int, int, int]] = {"thin": (16, 32, 64), "wide": (64, 128, 256)}


class PadShortcut(nn.Module):
    """Option-A shortcut: ``[B, C, H, W] -> [B, C + 2*pad, H/stride, W/stride]``, no parameters."""

    def __init__(self, stride: int, pad: int) -> None:
        super().__init__()
        self.stride = stride
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    """Two conv3x3-BN layers with a shortcut; ``[B, in, H, W] -> [B, out, H/stride, W/stride]``."""

    def __init__(self, in_planes: int, planes: int, stride: int, option: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if option == "A":
                self.shortcut = PadShortcut(stride, (planes - in_planes) // 2)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem conv3x3-BN-ReLU, three stages of ``blocks`` BasicBlocks, global avg pool, linear.

    ``forward``: ``[B, C, H, W] -> [B, num_classes]``.
    """

    def __init__(
        self,
        blocks: int,
        widths: tuple[int, int, int],
        num_classes: int,
        in_channels: int = 3,
        option: str = "A",
    ) -> None:
        super().__init__()
        w0 = widths[0]
        self.conv1 = nn.Conv2d(in_channels, w0, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w0)
        self.relu = nn.ReLU()
        stages: list[nn.Module] = []
        in_planes = w0
        for i, planes in enumerate(widths):
            layer = []
            for j in range(blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(BasicBlock(in_planes, planes, stride, option))
                in_planes = planes
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(self.avgpool(x).flatten(1))


def resnet20(
    num_classes: int, in_channels: int = 3, width: str = "thin", name: str | None = None
) -> CifarResNet:
    """ResNet-20 (3 stages x 3 blocks). ``width``: "thin" (16/32/64, option A) or "wide"
    (64/128/256, projection shortcuts). ``name`` (config label) is ignored."""
    if width not in WIDTHS:
        from adacal.errors import ConfigError

        raise ConfigError("architecture.width", f"{width!r} is not one of {sorted(WIDTHS)}")
    option = "A" if width == "thin" else "B"
    return CifarResNet(3, WIDTHS[width], num_classes, in_channels, option=option)
