"""CamVid road scenes in the SegNet split (367 train, 101 val, 233 test at 360x480, 11 classes).

Root layout (that of ``../shared/data/camvid.tar.gz`` once extracted, and of the SegNet
tutorial's ``CamVid/`` folder): ``{train,val,test}/<name>.{jpg,png}`` images and
``{train,val,test}annot/<name>.png`` uint8 label maps with values 0-10 and 11 = void
(mapped to ``ignore_index`` 255). Images are decoded once and, with ``load_size``, resized
(bilinear; labels nearest) to that size before augmentation.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, read_file

from adacal.data.segmentation import IGNORE_INDEX, SegmentationDataModule, as_size, resize_pair
from adacal.errors import ConfigError

CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree",
    "sign_symbol", "fence", "car", "pedestrian", "bicyclist",
)  # fmt: skip
VOID = 11
SPLITS = ("train", "val", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
ROOT_HINT = (
    "pass dataset.root=<folder with train/, trainannot/, test/, testannot/> "
    "(e.g. tar -xzf ../shared/data/camvid.tar.gz -C data/ and dataset.root=data/camvid)"
)


def _decode(path: Path, mode: ImageReadMode) -> Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_image(read_file(str(path)), mode=mode)


def list_split(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, label map) paths of one split, sorted by name; ConfigError on a bad layout."""
    images, annots = root / split, root / f"{split}annot"
    if not images.is_dir() or not annots.is_dir():
        found = sorted(p.name for p in root.iterdir())[:8] if root.is_dir() else []
        raise ConfigError(
            "dataset.root",
            f"{root} has the wrong layout: expected {images}/ and {annots}/ "
            f"(found {found}); {ROOT_HINT}",
        )
    pairs = []
    for image in sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label = annots / f"{image.stem}.png"
        if not label.is_file():
            raise ConfigError("dataset.root", f"{image} has no label map {label}; {ROOT_HINT}")
        pairs.append((image, label))
    if not pairs:
        raise ConfigError("dataset.root", f"{images} holds no images; {ROOT_HINT}")
    return pairs


def load_split(
    root: Path, split: str, load_size: tuple[int, int] | None
) -> tuple[list[Tensor], list[Tensor]]:
    """Decode one split: uint8 images [3, H, W] and label maps [H, W] (void -> 255)."""
    images, labels = [], []
    for image_path, label_path in list_split(root, split):
        image = _decode(image_path, ImageReadMode.RGB)
        label = _decode(label_path, ImageReadMode.GRAY)[0]
        if label.shape != image.shape[-2:]:
            raise ConfigError(
                "dataset.root", f"{label_path} is {tuple(label.shape)}, its image {image.shape}"
            )
        if int(label.max()) > VOID:
            raise ConfigError(
                "dataset.root",
                f"{label_path} holds label {int(label.max())}; CamVid label maps hold 0-10 and "
                f"{VOID} (void); {ROOT_HINT}",
            )
        label = torch.where(label == VOID, torch.tensor(IGNORE_INDEX, dtype=torch.uint8), label)
        if load_size is not None:
            image, label = resize_pair(image, label, load_size)
        images.append(image)
        labels.append(label)
    return images, labels


class CamVidDataModule(SegmentationDataModule):
    """CamVid from ``root``; ``train_splits`` (default train) train, ``test_split`` evaluates."""

    name = "camvid"

    def __init__(
        self,
        root: str | None = None,
        num_classes: int = len(CLASSES),
        load_size: Any = None,
        train_splits: Sequence[str] = ("train",),
        test_split: str = "test",
        name: str | None = None,
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
        in_channels: int = 3,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if root is None:
            raise ConfigError("dataset.root", f"not set; {ROOT_HINT}")
        self.root = Path(root).expanduser()  # read in setup(): the config builds without data
        if int(num_classes) != len(CLASSES):
            raise ConfigError(
                "dataset.num_classes", f"CamVid has {len(CLASSES)} classes, got {num_classes}"
            )
        for split in (*train_splits, test_split):
            if split not in SPLITS:
                raise ConfigError("dataset.train_splits", f"'{split}' is not one of {SPLITS}")
        self.num_classes = len(CLASSES)
        self.class_names = list(CLASSES)
        self.load_size = as_size(load_size, "dataset.load_size")
        self.train_splits, self.test_split = list(train_splits), test_split

    def _load(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        if not self.root.is_dir():
            raise ConfigError("dataset.root", f"{self.root} is not a folder; {ROOT_HINT}")
        train_x: list[Tensor] = []
        train_y: list[Tensor] = []
        for split in self.train_splits:
            x, y = load_split(self.root, split, self.load_size)
            train_x += x
            train_y += y
        test_x, test_y = load_split(self.root, self.test_split, self.load_size)
        return train_x, train_y, test_x, test_y
