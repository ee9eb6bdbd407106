"""CIFAR-10/100 from an ImageFolder root (``train/<class>/*``, ``test/<class>/*``, e.g. the
extracted ``../shared/data/cifar10-jpeg.tar.gz``) or torchvision's pickled batches.

Images are held as one uint8 tensor (decoded once, cached as ``<root>/.adacal_cache_*.pt``)
and augmented on tensors, so an epoch is not bound by JPEG decoding. With
``device_loader`` (``auto``: on a GPU trainer) the tensors move to the training device and
whole batches are augmented there (:mod:`adacal.data.device_loader`).
"""

from __future__ import annotations

import urllib.error
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import Tensor

from adacal.data.base import ClassificationDataModule, TensorImageDataset
from adacal.data.cache import build_image_cache
from adacal.errors import ConfigError

STATS = {
    10: ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    100: ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
TORCHVISION = {
    10: (torchvision.datasets.CIFAR10, "cifar-10-batches-py"),
    100: (torchvision.datasets.CIFAR100, "cifar-100-python"),
}
ROOT_HINT = (
    "pass dataset.root=<folder with train/<class>/ and test/<class>/> "
    "(e.g. tar -xzf ../shared/data/cifar10-jpeg.tar.gz -C data/ and dataset.root=data/cifar10)"
)


def is_image_folder_root(root: Path) -> bool:
    """True when ``root/train`` and ``root/test`` both hold class sub-folders."""
    return all(
        (root / s).is_dir() and any(p.is_dir() for p in (root / s).iterdir())
        for s in ("train", "test")
    )


def resolve_source(
    root: str | Path | None,
    download: bool,
    num_classes: int,
    download_dir: str | Path | None = None,
) -> tuple[str, Path]:
    """``("folder", root)`` for an ImageFolder root, ``("torchvision", dir)`` for torchvision's
    format (``download`` may fetch it into ``root`` or, without a root, ``download_dir``);
    anything else raises ConfigError("dataset.root")."""
    if root is None:
        if not download:
            raise ConfigError(
                "dataset.root", f"not set; {ROOT_HINT}, or dataset.download=true with network"
            )
        return "torchvision", Path(download_dir or Path("data") / f"cifar{num_classes}")
    path = Path(root).expanduser()
    if not path.exists():
        if download:
            return "torchvision", path
        raise ConfigError("dataset.root", f"{path} does not exist; {ROOT_HINT}")
    if is_image_folder_root(path):
        return "folder", path
    if (path / TORCHVISION[num_classes][1]).is_dir() or download:
        return "torchvision", path
    nested = (
        [p for p in path.iterdir() if p.is_dir() and is_image_folder_root(p)]
        if path.is_dir()
        else []
    )
    hint = f" (found {nested[0]}: pass dataset.root={nested[0]})" if nested else ""
    raise ConfigError(
        "dataset.root",
        f"{path} has the wrong layout{hint}: expected {path}/train/<class>/<image> and "
        f"{path}/test/<class>/<image> (ImageFolder), or torchvision's "
        f"{TORCHVISION[num_classes][1]}/; {ROOT_HINT}",
    )


def load_torchvision(
    root: Path, num_classes: int, download: bool
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """torchvision CIFAR as uint8 ``[N, 3, 32, 32]`` train/test tensors and long labels."""
    cls = TORCHVISION[num_classes][0]
    out: list[Tensor] = []
    for train in (True, False):
        try:
            ds = cls(str(root), train=train, download=download)
        except (urllib.error.URLError, OSError, RuntimeError) as exc:
            what = "download failed" if download else "not found"
            raise ConfigError(
                "dataset.root",
                f"torchvision CIFAR-{num_classes} {what} under {root} ({exc}); {ROOT_HINT}",
            ) from exc
        out += [
            torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(ds.targets),
        ]
    return out[0], out[1], out[2], out[3]


class CIFARDataModule(ClassificationDataModule):
    """CIFAR-10/100 32x32 RGB; ``val_dataloader`` = test set. ``root``: see module docstring."""

    def __init__(
        self,
        num_classes: int = 10,
        root: str | None = None,
        download: bool = False,
        download_dir: str | None = None,
        name: str | None = None,
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
        in_channels: int = 3,
        image_size: int = 32,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: Mapping[str, Any] | None = None,
        test_limit: int | None = None,
        train_limit: int | None = None,
        seed: int = 0,
        cache: bool = True,
        cache_dir: str | None = None,
        pin_memory: bool | None = None,
        device_loader: bool | str = "auto",
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
            device_loader=device_loader,
        )
        if num_classes not in STATS:
            raise ConfigError(
                "dataset.num_classes", f"CIFAR has 10 or 100 classes, got {num_classes}"
            )
        if in_channels != 3:
            raise ConfigError(
                "dataset.in_channels", f"CIFAR images have 3 channels, got {in_channels}"
            )
        self.name = name or f"cifar{num_classes}"
        self.num_classes, self.in_channels, self.image_size = int(num_classes), 3, int(image_size)
        self.mean, self.std = STATS[num_classes]
        self.root, self.download, self.download_dir = root, bool(download), download_dir
        self.cache, self.cache_dir = bool(cache), cache_dir
        self.classes: list[str] = []

    def _load_folder(self, root: Path) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        cache_dir = (self.cache_dir or root) if self.cache else None
        parts = [build_image_cache(root / s, cache_dir, self.image_size) for s in ("train", "test")]
        for split, part in zip(("train", "test"), parts, strict=True):
            if len(part.classes) != self.num_classes:
                raise ConfigError(
                    "dataset.num_classes",
                    f"{root / split} has {len(part.classes)} class folders but dataset.num_classes="
                    f"{self.num_classes}; use dataset=cifar{len(part.classes)} or fix the folder",
                )
        if parts[0].classes != parts[1].classes:
            raise ConfigError(
                "dataset.root", f"{root}/train and {root}/test have different class folders"
            )
        self.classes = parts[0].classes
        return parts[0].images, parts[0].labels, parts[1].images, parts[1].labels

    def _build(self) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        kind, path = resolve_source(self.root, self.download, self.num_classes, self.download_dir)
        if kind == "folder":
            xtr, ytr, xte, yte = self._load_folder(path)
        else:
            xtr, ytr, xte, yte = load_torchvision(path, self.num_classes, self.download)
        return (
            TensorImageDataset(xtr, ytr, self.train_transform()),
            TensorImageDataset(xtr, ytr, self.eval_transform()),
            TensorImageDataset(xte, yte, self.eval_transform()),
        )
