"""Augmentation on uint8 image tensors (no PIL), so a cached data set trains without decoding.

Order (as in the AutoAugment/Cutout CIFAR recipes): pad + random crop, horizontal flip,
AutoAugment (uint8), convert to float and normalise, Cutout (zeros = the mean after normalising).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import AutoAugment, AutoAugmentPolicy

from adacal.errors import ConfigError

AUGMENT_DEFAULTS: dict[str, Any] = {
    "crop_padding": 4,
    "flip": True,
    "autoaugment": False,
    "cutout": 0,
}


def augment_options(
    augment: Mapping[str, Any] | None, defaults: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Merge ``augment`` over ``defaults`` (``AUGMENT_DEFAULTS``); unknown keys: ConfigError."""
    opts = dict(AUGMENT_DEFAULTS if defaults is None else defaults)
    for key, value in dict(augment or {}).items():
        if key not in AUGMENT_DEFAULTS:
            raise ConfigError(
                f"dataset.augment.{key}", f"unknown option; valid: {sorted(AUGMENT_DEFAULTS)}"
            )
        opts[key] = value
    return opts


def normalise(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 ``[..., C, H, W]`` -> float ``(x/255 - mean) / std``."""
    return (x.float().div_(255.0) - mean) / std


def random_crop(x: Tensor, padding: int) -> Tensor:
    """Zero-pad ``[C, H, W]`` by ``padding`` on each side and crop a random ``H x W`` window."""
    if padding <= 0:
        return x
    _, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    i, j = torch.randint(0, 2 * padding + 1, (2,)).tolist()
    return padded[:, i : i + h, j : j + w]


def cutout(x: Tensor, size: int) -> Tensor:
    """Zero a ``size x size`` square (clipped at the border) at a random centre of ``[C, H, W]``."""
    if size <= 0:
        return x
    _, h, w = x.shape
    cy, cx = torch.randint(0, h, (1,)).item(), torch.randint(0, w, (1,)).item()
    y0, y1 = max(0, cy - size // 2), min(h, cy + size - size // 2)
    x0, x1 = max(0, cx - size // 2), min(w, cx + size - size // 2)
    x = x.clone()
    x[:, y0:y1, x0:x1] = 0
    return x


class TensorTransform:
    """Callable ``uint8 [C, H, W] -> float [C, H, W]``: optional augmentation, then normalisation.

    ``train=False`` gives the test-time transform (normalisation only).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        autoaugment: bool = False,
        cutout: int = 0,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.train = train
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.autoaugment = (
            AutoAugment(AutoAugmentPolicy.CIFAR10) if (train and autoaugment) else None
        )
        self.cutout = int(cutout)

    def __call__(self, x: Tensor) -> Tensor:
        if self.train:
            x = random_crop(x, self.crop_padding)
            if self.flip and torch.rand(()) < 0.5:
                x = x.flip(-1)
            if self.autoaugment is not None:
                x = self.autoaugment(x)
        out = normalise(x, self.mean, self.std)
        if self.train:
            out = cutout(out, self.cutout)
        return out
