"""Semantic segmentation data: a tensor dataset, its transforms, and the datamodule base.

Images are held decoded as uint8 ``[3, H, W]`` tensors and label maps as uint8 ``[H, W]``
(void pixels already mapped to ``ignore_index``, 255), so an epoch does no file decoding.

Training transform (DeepLab recipe): random scale s ~ U(scale_min, scale_max) (image bilinear,
labels nearest), pad to the crop size (image with the mean, i.e. 0 after normalising; labels
with ``ignore_index``), random crop, horizontal flip, normalise. Evaluation transform: resize
to ``eval_size`` (``eval_mode="resize"``; labels nearest) or pad to it (``"pad"``: the original
pixels are scored, padding is ignored), or leave the size (``eval_size: null``), normalise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from adacal.data.base import SplitDataModule, limit_indices
from adacal.data.transforms import normalise
from adacal.errors import ConfigError

IGNORE_INDEX = 255
EVAL_MODES = ("resize", "pad")


def as_size(value: Any, key: str) -> tuple[int, int] | None:
    """``null`` -> None, ``n`` -> (n, n), ``[h, w]`` -> (h, w); positive ints or ConfigError."""
    if value is None:
        return None
    values = [value, value] if isinstance(value, int) else list(value)
    if len(values) != 2 or any(int(v) <= 0 for v in values):
        raise ConfigError(key, f"must be null, a positive int or [height, width], got {value}")
    return int(values[0]), int(values[1])


def resize_pair(image: Tensor, label: Tensor, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """uint8 image [3, H, W] (bilinear, antialiased) and label [H, W] (nearest) to ``size``."""
    if tuple(image.shape[-2:]) == size:
        return image, label
    img = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True)
    img = img[0].round_().clamp_(0, 255).to(torch.uint8)
    lab = F.interpolate(label[None, None].float(), size=size, mode="nearest-exact")
    return img, lab[0, 0].to(torch.uint8)


def pad_pair(
    image: Tensor, label: Tensor, size: tuple[int, int], fill: Tensor
) -> tuple[Tensor, Tensor]:
    """Pad bottom/right to at least ``size``: image [3, H, W] with ``fill`` [3] (uint8, the
    mean colour), label [H, W] with ``IGNORE_INDEX``."""
    h, w = image.shape[-2:]
    ph, pw = max(size[0] - h, 0), max(size[1] - w, 0)
    if not ph and not pw:
        return image, label
    out = fill.view(3, 1, 1).expand(3, h + ph, w + pw).clone()
    out[:, :h, :w] = image
    lab = torch.full((h + ph, w + pw), IGNORE_INDEX, dtype=label.dtype)
    lab[:h, :w] = label
    return out, lab


class SegTransform:
    """``(uint8 [3, H, W], uint8 [H, W]) -> (float [3, h, w], long [h, w])`` (module docstring)."""

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool,
        crop_size: tuple[int, int] | None = None,
        scale: Sequence[float] = (0.5, 2.0),
        flip: bool = True,
        eval_size: tuple[int, int] | None = None,
        eval_mode: str = "resize",
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.fill = (self.mean.view(-1) * 255).round().to(torch.uint8)
        self.train = train
        self.crop_size = crop_size
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip = flip
        self.eval_size = eval_size
        self.eval_mode = eval_mode

    def __call__(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        if self.train:
            image, label = self._augment(image, label)
        elif self.eval_size is not None:
            if self.eval_mode == "resize":
                image, label = resize_pair(image, label, self.eval_size)
            else:
                image, label = pad_pair(image, label, self.eval_size, self.fill)
                h, w = self.eval_size
                image, label = image[:, :h, :w], label[:h, :w]
        return normalise(image, self.mean, self.std), label.long()

    def _augment(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        lo, hi = self.scale
        s = lo + (hi - lo) * float(torch.rand(()))
        h, w = image.shape[-2:]
        image, label = resize_pair(image, label, (max(1, round(h * s)), max(1, round(w * s))))
        if self.crop_size is not None:
            image, label = pad_pair(image, label, self.crop_size, self.fill)
            ch, cw = self.crop_size
            i = int(torch.randint(0, image.shape[-2] - ch + 1, ()))
            j = int(torch.randint(0, image.shape[-1] - cw + 1, ()))
            image, label = image[:, i : i + ch, j : j + cw], label[i : i + ch, j : j + cw]
        if self.flip and float(torch.rand(())) < 0.5:
            image, label = image.flip(-1), label.flip(-1)
        return image, label


class SegmentationDataset(Dataset):
    """Item i: ``transform(images[i], labels[i])`` = (float [3, h, w], long [h, w])."""

    def __init__(self, images: list[Tensor], labels: list[Tensor], transform: SegTransform) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} label maps")
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self.transform(self.images[index], self.labels[index])


class SegmentationDataModule(SplitDataModule):
    """Base: subclasses set ``num_classes``, ``mean``, ``std``, ``class_names`` and implement
    ``_load() -> (train_images, train_labels, test_images, test_labels)`` as lists of uint8
    tensors (labels with void = ``IGNORE_INDEX``). ``val_dataloader`` is the test split.

    ``crop_size`` [h, w] of the training crops; ``pad`` false refuses a crop larger than the
    smallest scaled training image; ``eval_size`` / ``eval_mode`` the evaluation resolution.
    """

    name = "segmentation"
    in_channels = 3
    ignore_index = IGNORE_INDEX
    drop_last_train = True  # BatchNorm: no training batch of one
    size_key = "dataset.eval_size"

    def __init__(
        self,
        crop_size: Any = None,
        scale: Sequence[float] = (0.5, 2.0),
        flip: bool = True,
        pad: bool = True,
        eval_size: Any = None,
        eval_mode: str = "resize",
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        train_limit: int | None = None,
        test_limit: int | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, num_workers, test_limit, train_limit, seed, pin_memory
        )
        self.crop_size = as_size(crop_size, "dataset.crop_size")
        self.eval_size = as_size(eval_size, "dataset.eval_size")
        if eval_mode not in EVAL_MODES:
            raise ConfigError("dataset.eval_mode", f"'{eval_mode}' is not one of {EVAL_MODES}")
        if len(scale) != 2 or not 0 < float(scale[0]) <= float(scale[1]):
            raise ConfigError("dataset.scale", f"must be [min, max] with 0 < min <= max: {scale}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.flip, self.pad, self.eval_mode = bool(flip), bool(pad), eval_mode
        self.mean = (0.485, 0.456, 0.406)
        self.std = (0.229, 0.224, 0.225)

    def _load(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        raise NotImplementedError

    def input_sizes(self) -> dict[str, tuple[int, int] | None]:
        """The network input sizes this datamodule produces, by config key."""
        return {"dataset.crop_size": self.crop_size, "dataset.eval_size": self.eval_size}

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_x, train_y, test_x, test_y = self._load()
        self._check_crop(train_x)
        self._check_eval_size(train_x + test_x)
        idx = limit_indices(len(train_x), self.train_limit, "dataset.train_limit")
        if idx is not None:
            train_x, train_y = [train_x[i] for i in idx], [train_y[i] for i in idx]
        idx = limit_indices(len(test_x), self.test_limit, "dataset.test_limit")
        if idx is not None:
            test_x, test_y = [test_x[i] for i in idx], [test_y[i] for i in idx]
        common = {"mean": self.mean, "std": self.std, "eval_size": self.eval_size}
        common["eval_mode"] = self.eval_mode
        train_tf = SegTransform(
            train=True, crop_size=self.crop_size, scale=self.scale, flip=self.flip, **common
        )
        eval_tf = SegTransform(train=False, **common)
        self.train_set = SegmentationDataset(train_x, train_y, train_tf)
        # calibration / IAT-fit images: training images at the evaluation resolution
        self.train_eval_set = SegmentationDataset(train_x, train_y, eval_tf)
        self.test_set = SegmentationDataset(test_x, test_y, eval_tf)

    def _check_eval_size(self, images: list[Tensor]) -> None:
        """``eval_mode=pad`` scores every original pixel: no image may exceed ``eval_size``."""
        if self.eval_mode != "pad" or self.eval_size is None or not images:
            return
        h = max(int(x.shape[-2]) for x in images)
        w = max(int(x.shape[-1]) for x in images)
        if h > self.eval_size[0] or w > self.eval_size[1]:
            raise ConfigError(
                "dataset.eval_size",
                f"{self.eval_size[0]}x{self.eval_size[1]} is smaller than the largest image "
                f"({h}x{w}) and dataset.eval_mode=pad would cut it; use an eval_size of at least "
                f"[{h},{w}] (rounded up to the encoder's stride) or dataset.eval_mode=resize",
            )

    def _check_crop(self, images: list[Tensor]) -> None:
        if self.crop_size is None or self.pad or not images:
            return
        h = min(int(x.shape[-2]) for x in images)
        w = min(int(x.shape[-1]) for x in images)
        sh, sw = int(h * self.scale[0]), int(w * self.scale[0])
        if self.crop_size[0] > sh or self.crop_size[1] > sw:
            raise ConfigError(
                "dataset.crop_size",
                f"{self.crop_size[0]}x{self.crop_size[1]} is larger than the smallest training "
                f"image after scaling by {self.scale[0]} ({sh}x{sw}) and dataset.pad=false; "
                f"use a crop of at most [{sh},{sw}], raise dataset.scale, or set dataset.pad=true",
            )
