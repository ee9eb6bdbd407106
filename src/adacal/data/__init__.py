"""LightningDataModules for classification, each with a fixed ``calibration_set(n, seed)``."""

from __future__ import annotations

from adacal.data.base import ClassificationDataModule, TensorImageDataset
from adacal.data.cache import ImageCache, build_image_cache
from adacal.data.cifar import CIFARDataModule
from adacal.data.digits import DigitsDataModule
from adacal.data.imagenet import ImageNetDataModule
from adacal.data.transforms import TensorTransform

__all__ = [
    "CIFARDataModule",
    "ClassificationDataModule",
    "DigitsDataModule",
    "ImageCache",
    "ImageNetDataModule",
    "TensorImageDataset",
    "TensorTransform",
    "build_image_cache",
]
