"""torchvision ResNet-18/34 (ImageNet layout; the max-pool stem is kept, the converter moves it)."""

from __future__ import annotations

import urllib.error

import torchvision
from torch import nn

from adacal.errors import ConfigError

_BUILDERS = {
    18: (torchvision.models.resnet18, torchvision.models.ResNet18_Weights.IMAGENET1K_V1),
    34: (torchvision.models.resnet34, torchvision.models.ResNet34_Weights.IMAGENET1K_V1),
}


def resnet(
    depth: int,
    num_classes: int = 1000,
    in_channels: int = 3,
    pretrained: bool = False,
    name: str | None = None,
) -> torchvision.models.ResNet:
    """torchvision ``resnet{depth}``: ``[B, C, H, W] -> [B, num_classes]``.

    ``pretrained=True`` loads the IMAGENET1K_V1 weights (from ``$TORCH_HOME/hub/checkpoints``
    or the network); a different ``num_classes`` replaces ``fc``, a different
    ``in_channels`` replaces ``conv1`` (both freshly initialised).
    ``name`` (config label) is ignored.
    """
    if depth not in _BUILDERS:
        raise ConfigError("architecture.depth", f"{depth} is not one of {sorted(_BUILDERS)}")
    build, weights = _BUILDERS[depth]
    if not pretrained:
        model = build(weights=None, num_classes=num_classes)
    else:
        try:
            model = build(weights=weights)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            raise ConfigError(
                "architecture.pretrained",
                f"cannot load {weights} ({type(exc).__name__}: {exc}); no network: put the weights "
                "file in $TORCH_HOME/hub/checkpoints or set architecture.pretrained=false",
            ) from exc
        if num_classes != model.fc.out_features:
            model.fc = nn.Linear(model.fc.in_features, num_classes)
    if in_channels != 3:
        model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return model


def resnet18(
    num_classes: int = 1000, in_channels: int = 3, pretrained: bool = False, name: str | None = None
) -> nn.Module:
    """``resnet(18, ...)``."""
    return resnet(18, num_classes, in_channels, pretrained)


def resnet34(
    num_classes: int = 1000, in_channels: int = 3, pretrained: bool = False, name: str | None = None
) -> nn.Module:
    """``resnet(34, ...)``."""
    return resnet(34, num_classes, in_channels, pretrained)
