"""ANNs for event frames (``2·n_bins`` input channels), as in the authors' neuromorphic code
(bic-L/burst-ann2snn, ``neuromorphic/models``): a torchvision ResNet whose stem is preceded by a
3×3 conv reducing the ``2·n_bins`` channels to 3 and whose max-pool is an average pool, and
VGG-11/16 with average pooling (:class:`adacal.models.vgg.VGG`). ``width`` scales every
layer's channels (1.0 = the published widths), for a network small enough to train on a CPU.

ReLU call sites: ResNet-18 17, ResNet-34 33 (the stem, two per BasicBlock); VGG-11 10
(8 conv + 2 classifier), VGG-16 15.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from adacal.errors import ConfigError
from adacal.models.vgg import VGG, VGG16_CFG

RESNET_LAYERS = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}
VGG11_CFG: list[int | str] = [64, "A", 128, "A", 256, 256, "A", 512, 512, "A", 512, 512, "A"]
VGG_CFGS = {11: VGG11_CFG, 16: VGG16_CFG}


def scaled(channels: int, width: float) -> int:
    """``round(channels · width)``, at least 1."""
    return max(1, round(channels * width))


def check_width(width: float) -> float:
    if not float(width) > 0:
        raise ConfigError("architecture.width", f"must be positive, got {width}")
    return float(width)


class EventResNet(nn.Module):
    """``reduce`` (3×3 conv, ``in_channels -> 3``) -> torchvision's ResNet stem (7×7/2 conv,
    BN, ReLU) with ``AvgPool2d(3, 2, 1)`` in place of the max pool -> four stages of
    torchvision ``BasicBlock`` (64, 128, 256, 512 channels × ``width``) -> global average
    pool -> ``fc``. ``[B, in_channels, H, W] -> [B, num_classes]``.

    At ``width=1`` the parameter names and shapes are torchvision's ``resnet{depth}`` plus
    ``reduce.weight`` / ``reduce.bias`` (``tests/test_event_models.py``)."""

    def __init__(self, depth: int, num_classes: int, in_channels: int, width: float = 1.0) -> None:
        super().__init__()
        if depth not in RESNET_LAYERS:
            raise ConfigError(
                "architecture.depth", f"{depth} is not one of {sorted(RESNET_LAYERS)}"
            )
        planes = [scaled(c, check_width(width)) for c in (64, 128, 256, 512)]
        self.reduce = nn.Conv2d(in_channels, 3, kernel_size=3, padding=1)
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1)  # torchvision's name
        self.inplanes = planes[0]
        for i, (p, blocks) in enumerate(zip(planes, RESNET_LAYERS[depth], strict=True)):
            setattr(self, f"layer{i + 1}", self._make_layer(p, blocks, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3], num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        """torchvision's ``ResNet._make_layer`` for BasicBlock (1×1 conv + BN shortcut when
        the shape changes)."""
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes),
            )
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.reduce(x)))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.avgpool(x).flatten(1))


def event_resnet(
    depth: int,
    num_classes: int,
    in_channels: int,
    width: float = 1.0,
    name: str | None = None,
) -> EventResNet:
    """:class:`EventResNet` (``name``, the config label, is ignored)."""
    return EventResNet(depth, num_classes, in_channels, width)


def event_vgg(
    depth: int,
    num_classes: int,
    in_channels: int,
    width: float = 1.0,
    hidden: int | None = None,
    dropout: float = 0.0,
    image_size: int = 32,
    name: str | None = None,
) -> VGG:
    """VGG-``depth`` (11 or 16) with BN and average pooling, every conv's channels × ``width``,
    classifier ``hidden`` units (default ``4096 × width``). ``image_size`` fixes the flattened
    size (``512·width · (image_size // 32)²``)."""
    if depth not in VGG_CFGS:
        raise ConfigError("architecture.depth", f"{depth} is not one of {sorted(VGG_CFGS)}")
    width = check_width(width)
    cfg = [c if c == "A" else scaled(int(c), width) for c in VGG_CFGS[depth]]
    hidden = scaled(4096, width) if hidden is None else int(hidden)
    return VGG(cfg, num_classes, in_channels, hidden, dropout, image_size)
