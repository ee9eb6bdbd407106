"""A tiny VGG-style net for 32x32 digits: fast CPU training for tests and smoke runs.

``conv-bn-relu, avgpool, conv-bn-relu, avgpool, (conv-bn-relu) x2, avgpool, linear-relu, linear``:
``[B, C, 32, 32] -> [B, num_classes]``; 5 ReLU sites. Pooling early keeps it cheap
(~6 M MACs per image at width 32): the digits hold only 8x8 pixels of information anyway.
"""

from __future__ import annotations

from torch import nn


def _conv(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def small_cnn(
    num_classes: int, in_channels: int = 1, width: int = 32, name: str | None = None
) -> nn.Sequential:
    """Four conv layers (``width``, ``width``, ``2 width``, ``2 width``) and a 2-layer head.

    Spatial size 32 -> 16 -> 8 -> 4 (three AvgPool2d(2)); head ``Linear(2w*16, 4w)-ReLU-Linear``.
    ``name`` (config label) is ignored.
    """
    w = width
    return nn.Sequential(
        *_conv(in_channels, w),
        nn.AvgPool2d(2),
        *_conv(w, w),
        nn.AvgPool2d(2),
        *_conv(w, 2 * w),
        *_conv(2 * w, 2 * w),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(2 * w * 16, 4 * w),
        nn.ReLU(),
        nn.Linear(4 * w, num_classes),
    )
