"""sklearn's 8x8 digits (1797 images, values 0..16) upsampled to 32x32: a real data set that
trains in seconds on a CPU, for tests and smoke runs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor

from adacal.data.base import ClassificationDataModule, TensorImageDataset
from adacal.errors import ConfigError

# No flips for digits; a 2-px shift is harmless.
DIGITS_AUGMENT = {"crop_padding": 2, "flip": False, "autoaugment": False, "cutout": 0}


def digits_uint8(image_size: int = 32) -> tuple[Tensor, Tensor]:
    """All digits: uint8 ``[1797, 1, S, S]`` (bilinear, ``x*255/16``), labels ``[1797]``."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32)[:, None] * (255.0 / 16.0)
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8), torch.tensor(data.target, dtype=torch.long)


class DigitsDataModule(ClassificationDataModule):
    """sklearn digits, deterministic stratified split (``test_fraction`` held out, ``seed``)."""

    name = "digits"

    def __init__(
        self,
        name: str = "digits",
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 32,
        root: str | None = None,
        download: bool = False,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: Mapping[str, Any] | None = None,
        test_limit: int | None = None,
        train_limit: int | None = None,
        seed: int = 0,
        test_fraction: float = 0.2,
        pin_memory: bool | None = None,
        device_loader: bool | str = False,
    ) -> None:
        super().__init__(
            batch_size,
            eval_batch_size,
            num_workers,
            augment,
            DIGITS_AUGMENT,
            test_limit,
            train_limit,
            seed,
            pin_memory,
            device_loader=device_loader,
        )
        if num_classes != 10:
            raise ConfigError("dataset.num_classes", f"digits has 10 classes, got {num_classes}")
        if in_channels != 1:
            raise ConfigError("dataset.in_channels", f"digits has 1 channel, got {in_channels}")
        if not 0.0 < test_fraction < 1.0:
            raise ConfigError("dataset.test_fraction", f"must be in (0, 1), got {test_fraction}")
        self.num_classes, self.in_channels, self.image_size = 10, 1, int(image_size)
        self.test_fraction = float(test_fraction)
        # Of the uint8 images / 255 (whole set; fixed constants keep them independent of the split).
        self.mean, self.std = (0.3052,), (0.3236,)

    def _build(self) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        x, y = digits_uint8(self.image_size)
        train_idx, test_idx = train_test_split(
            torch.arange(len(y)).numpy(),
            test_size=self.test_fraction,
            random_state=self.seed,
            stratify=y.numpy(),
        )
        train_idx, test_idx = torch.as_tensor(train_idx), torch.as_tensor(test_idx)
        xtr, ytr, xte, yte = x[train_idx], y[train_idx], x[test_idx], y[test_idx]
        return (
            TensorImageDataset(xtr, ytr, self.train_transform()),
            TensorImageDataset(xtr, ytr, self.eval_transform()),
            TensorImageDataset(xte, yte, self.eval_transform()),
        )
