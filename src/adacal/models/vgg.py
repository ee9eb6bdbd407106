"""VGG-16 as used by SNN Calibration (Li et al., ICML 2021): BN after every conv,
average pooling instead of max pooling, three-layer classifier.

Input ``[B, C, 32, 32]`` (CIFAR) gives a ``[B, 512, 1, 1]`` feature map, flattened to 512.
ReLU call sites: 13 (conv) + 2 (classifier) = 15.
"""

from __future__ import annotations

from torch import Tensor, nn

# Channels per conv layer; "A" marks a 2x2 average pool where VGG has max pooling.
VGG16_CFG: list[int | str] = [64, 64, "A", 128, 128, "A", 256, 256, 256, "A"] + [
    512,
    512,
    512,
    "A",
] * 2


def _features(in_channels: int, cfg: list[int | str]) -> nn.Sequential:
    """Conv3x3 + BN + ReLU blocks with AvgPool2d(2) at the "A" markers."""
    layers: list[nn.Module] = []
    channels = in_channels
    for item in cfg:
        if item == "A":
            layers.append(nn.AvgPool2d(2))
            continue
        out = int(item)
        layers += [
            nn.Conv2d(channels, out, 3, padding=1, bias=False),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        ]
        channels = out
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG feature extractor + ``Linear(512·s², hidden)-ReLU-Linear(hidden, hidden)-ReLU-Linear``,
    s = image_size / 32 (1 for CIFAR, 7 for ImageNet at 224).

    ``forward``: ``[B, C, image_size, image_size] -> [B, num_classes]`` logits.
    """

    def __init__(
        self,
        cfg: list[int | str],
        num_classes: int,
        in_channels: int = 3,
        hidden: int = 4096,
        dropout: float = 0.0,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        self.features = _features(in_channels, cfg)
        last = [c for c in cfg if c != "A"][-1]
        side = image_size // 2 ** cfg.count("A")  # 32 -> 1 (CIFAR), 224 -> 7 (ImageNet)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(int(last) * side * side, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        _init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))


def _init_weights(model: nn.Module) -> None:
    """As torchvision's VGG: Kaiming-normal (fan-out) convs, N(0, 0.01) linears, BN to
    identity, zero biases. (Fan-out Kaiming on the 4096 -> K classifier gives logits of
    std ~ 10^2 and a NaN loss within 50 steps at lr 0.1.)"""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
        if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def vgg16(
    num_classes: int,
    in_channels: int = 3,
    dropout: float = 0.0,
    name: str | None = None,
    image_size: int = 32,
) -> VGG:
    """VGG-16: 13 conv + 3 linear layers, 15 ReLU sites; ~33.6 M params at 32x32 (CIFAR),
    ~138 M at 224x224 (ImageNet, torchvision's classifier shapes).

    ``name`` is the config label (``architecture.name``), accepted and ignored.
    """
    return VGG(
        VGG16_CFG,
        num_classes=num_classes,
        in_channels=in_channels,
        dropout=dropout,
        image_size=image_size,
    )
