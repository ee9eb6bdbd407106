"""Small models for tests that need an architecture the package does not ship."""

from __future__ import annotations

from torch import nn


def maxpool_net(
    num_classes: int, in_channels: int = 1, width: int = 8, name: str | None = None
) -> nn.Sequential:
    """conv-ReLU, conv-ReLU, MaxPool, linear: max pooling between two spiking layers (not
    convertible). ``[B, C, 32, 32] -> [B, num_classes]``; ``name`` is ignored."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(4),
        nn.Flatten(),
        nn.Linear(width * 8 * 8, num_classes),
    )
