"""ImageNet (ILSVRC-2012) from an ImageFolder root with ``train/<wnid>/*`` and ``val/<wnid>/*``.

Too large to cache as tensors: PIL decoding with the standard transforms
(RandomResizedCrop(224) + flip for training; Resize(256) + CenterCrop(224) for evaluation).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torchvision import transforms as T
from torchvision.datasets import ImageFolder

from adacal.data.base import ClassificationDataModule
from adacal.errors import ConfigError

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
ROOT_HINT = "pass dataset.root=<folder with train/<wnid>/ and val/<wnid>/> (ImageFolder layout)"


class ImageNetDataModule(ClassificationDataModule):
    """ImageNet classification; ``val_dataloader`` and ``test_dataloader`` both use ``val/``."""

    def __init__(
        self,
        root: str | None = None,
        download: bool = False,
        name: str = "imagenet",
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
        num_classes: int = 1000,
        in_channels: int = 3,
        image_size: int = 224,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 8,
        augment: Mapping[str, Any] | None = None,
        test_limit: int | None = None,
        train_limit: int | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            batch_size,
            eval_batch_size,
            num_workers,
            augment,
            None,
            test_limit,
            train_limit,
            seed,
            pin_memory,
        )
        if in_channels != 3:
            raise ConfigError(
                "dataset.in_channels", f"ImageNet images have 3 channels, got {in_channels}"
            )
        if download:
            raise ConfigError(
                "dataset.download", f"ImageNet cannot be downloaded automatically; {ROOT_HINT}"
            )
        self.name = name
        self.num_classes, self.in_channels, self.image_size = int(num_classes), 3, int(image_size)
        self.mean, self.std = MEAN, STD
        self.root = root

    def _check_root(self) -> Path:
        if self.root is None:
            raise ConfigError("dataset.root", f"not set; {ROOT_HINT}")
        path = Path(self.root).expanduser()
        if not path.is_dir():
            raise ConfigError("dataset.root", f"{path} does not exist; {ROOT_HINT}")
        for split in ("train", "val"):
            if not (path / split).is_dir():
                raise ConfigError(
                    "dataset.root",
                    f"{path} has the wrong layout: no {split}/ folder; expected "
                    f"{path}/train/<wnid>/<image> and {path}/val/<wnid>/<image>; {ROOT_HINT}",
                )
        return path

    def _build(self) -> tuple[ImageFolder, ImageFolder, ImageFolder]:
        path = self._check_root()
        s = self.image_size
        norm = [T.ToTensor(), T.Normalize(self.mean, self.std)]
        flip = [T.RandomHorizontalFlip()] if self.augment["flip"] else []
        train_tf = T.Compose([T.RandomResizedCrop(s), *flip, *norm])
        eval_tf = T.Compose([T.Resize(int(round(s * 256 / 224))), T.CenterCrop(s), *norm])
        train = ImageFolder(str(path / "train"), transform=train_tf)
        if len(train.classes) != self.num_classes:
            raise ConfigError(
                "dataset.num_classes",
                f"{path}/train has {len(train.classes)} class folders but "
                f"dataset.num_classes={self.num_classes}",
            )
        return (
            train,
            ImageFolder(str(path / "train"), transform=eval_tf),
            ImageFolder(str(path / "val"), transform=eval_tf),
        )
