"""Shared pieces of the classification datamodules: a Dataset over a uint8 tensor, limits,
loaders and the fixed calibration subset."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Subset

from adacal.data.batch_augment import BatchAugment
from adacal.data.device_loader import DeviceBatches
from adacal.data.transforms import TensorTransform, augment_options
from adacal.errors import ConfigError

# Subsets chosen by ``train_limit`` / ``test_limit`` use this fixed permutation seed, so the
# same N images are used whatever the run's seed (ImageFolder order is sorted by class, so
# a plain "first N" would hold a single class).
LIMIT_SEED = 0


class TensorImageDataset(Dataset):
    """``images`` uint8 ``[N, C, H, W]``, ``labels`` long ``[N]``; item ``i`` is
    ``(transform(images[i]) float [C, H, W], label int)``."""

    def __init__(
        self, images: Tensor, labels: Tensor, transform: Callable[[Tensor], Tensor]
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(
                f"expected uint8 [N,C,H,W] images and [N] labels, got {tuple(images.shape)}"
            )
        self.images = images
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def tensors(dataset: Dataset) -> tuple[Tensor, Tensor]:
        """``(images uint8 [N, C, H, W], labels [N])`` behind a TensorImageDataset or a
        ``Subset`` of one; ConfigError("dataset.device_loader") for anything else."""
        indices = None
        if isinstance(dataset, Subset):
            dataset, indices = dataset.dataset, torch.as_tensor(dataset.indices)
        if not isinstance(dataset, TensorImageDataset):
            raise ConfigError(
                "dataset.device_loader",
                f"{type(dataset).__name__} is not held as a uint8 tensor; "
                "set dataset.device_loader=false",
            )
        if indices is None:
            return dataset.images, dataset.labels
        return dataset.images[indices], dataset.labels[indices]

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


def limit_indices(n: int, limit: int | None, key: str) -> Tensor | None:
    """``None`` (use all) or the first ``limit`` entries of a fixed permutation of ``range(n)``."""
    if limit is None or limit >= n:
        return None
    if limit <= 0:
        raise ConfigError(key, f"must be a positive number of images or null, got {limit}")
    return torch.randperm(n, generator=torch.Generator().manual_seed(LIMIT_SEED))[:limit]


def check_positive(key: str, value: int) -> int:
    if int(value) <= 0:
        raise ConfigError(key, f"must be positive, got {value}")
    return int(value)


class SplitDataModule(L.LightningDataModule):
    """What every datamodule here shares: the loader settings, the train / val / test loaders
    (``val`` is the test set) over ``train_set`` / ``test_set``, and the fixed calibration
    subset drawn from ``train_eval_set`` (the training images with the test-time transform).
    Subclasses fill the three datasets in ``setup``."""

    drop_last_train = False  # segmentation sets True: BatchNorm on a training batch of one
    size_key = "dataset.image_size"  # the config key that fixes the calibration images' size

    def __init__(
        self,
        batch_size: int,
        eval_batch_size: int | None,
        num_workers: int,
        test_limit: int | None,
        train_limit: int | None,
        seed: int,
        pin_memory: bool | None,
    ) -> None:
        super().__init__()
        self.batch_size = check_positive("dataset.batch_size", batch_size)
        self.eval_batch_size = check_positive(
            "dataset.eval_batch_size", eval_batch_size or batch_size
        )
        if int(num_workers) < 0:
            raise ConfigError("dataset.num_workers", f"must be >= 0, got {num_workers}")
        self.num_workers = int(num_workers)
        self.test_limit = test_limit
        self.train_limit = train_limit
        self.seed = int(seed)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.mean: Sequence[float] = ()
        self.std: Sequence[float] = ()
        self.train_set: Dataset | None = None
        self.train_eval_set: Dataset | None = None
        self.test_set: Dataset | None = None

    def _loader(self, train: bool, batch_size: int) -> DataLoader:
        self.setup()
        return DataLoader(
            self.train_set if train else self.test_set,
            batch_size=batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
            drop_last=train and self.drop_last_train,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(True, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(False, self.eval_batch_size)

    def calibration_set(self, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
        """``n`` training images with the test-time transform: (images float ``[n, C, H, W]``
        normalised, labels long ``[n]`` (classification) or ``[n, H, W]`` (segmentation),
        indices long ``[n]`` into the (limited) training set).

        Drawn by ``torch.randperm`` with its own ``torch.Generator().manual_seed(seed)``, so every
        process and every run with the same seed gets the same subset.
        """
        self.setup()
        assert self.train_eval_set is not None
        total = len(self.train_eval_set)
        if not 0 < n <= total:
            raise ConfigError(
                "calibration.num_samples", f"needs 1..{total} images (training set size), got {n}"
            )
        indices = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))[:n]
        items = [self.train_eval_set[i] for i in indices.tolist()]
        shapes = sorted({tuple(x.shape) for x, _ in items})
        if len(shapes) > 1:
            raise ConfigError(
                self.size_key,
                f"training images differ in size {shapes[:3]}; set {self.size_key} so "
                "calibration batches can be stacked",
            )
        images = torch.stack([x for x, _ in items])
        labels = torch.stack([torch.as_tensor(y, dtype=torch.long) for _, y in items])
        return images, labels, indices


class ClassificationDataModule(SplitDataModule):
    """Base: subclasses set ``num_classes``, ``in_channels``, ``image_size``, ``mean``, ``std`` and
    implement ``_build() -> (train, train_eval, test)`` datasets
    (``train_eval`` = the training images with the test-time transform).
    ``val_dataloader`` is the test set."""

    name = "base"
    DEVICE_LOADER = ("auto", True, False)

    def __init__(
        self,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: Mapping[str, Any] | None = None,
        augment_defaults: Mapping[str, Any] | None = None,
        test_limit: int | None = None,
        train_limit: int | None = None,
        seed: int = 0,
        pin_memory: bool | None = None,
        device_loader: bool | str = False,
    ) -> None:
        super().__init__(
            batch_size, eval_batch_size, num_workers, test_limit, train_limit, seed, pin_memory
        )
        self.augment = augment_options(augment, augment_defaults)
        if device_loader not in self.DEVICE_LOADER:
            raise ConfigError(
                "dataset.device_loader", f"must be auto, true or false, got {device_loader!r}"
            )
        self.device_loader = device_loader

    # -- subclass hook -----------------------------------------------------------------
    def _build(self) -> tuple[Dataset, Dataset, Dataset]:
        raise NotImplementedError

    # -- transforms for tensor-backed subclasses ---------------------------------------
    def train_transform(self) -> TensorTransform:
        return TensorTransform(self.mean, self.std, train=True, **self.augment)

    def eval_transform(self) -> TensorTransform:
        return TensorTransform(self.mean, self.std, train=False)

    # -- the device data path (dataset.device_loader) -----------------------------------
    def _training_device(self) -> tuple[torch.device, int, int]:
        """(device, rank, world size) of the attached trainer; the CPU without one."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return torch.device("cpu"), 0, 1
        return trainer.strategy.root_device, trainer.global_rank, trainer.world_size

    def uses_device_loader(self) -> bool:
        """``true``: always; ``auto``: when the trainer runs on a GPU; ``false``: never."""
        if self.device_loader == "auto":
            return self._training_device()[0].type == "cuda"
        return bool(self.device_loader)

    def _epoch(self) -> int:
        trainer = getattr(self, "trainer", None)
        return int(trainer.current_epoch) if trainer is not None else 0

    def device_batches(self, train: bool) -> DeviceBatches:
        """The training (augmented, shuffled) or test (normalised) set as device batches."""
        self.setup()
        device, rank, world = self._training_device()
        images, labels = TensorImageDataset.tensors(self.train_set if train else self.test_set)
        options = self.augment if train else {}
        return DeviceBatches(
            images,
            labels,
            self.batch_size if train else self.eval_batch_size,
            BatchAugment(self.mean, self.std, train=train, **options),
            device=device,
            shuffle=train,
            drop_last=train and self.drop_last_train,
            seed=self.seed,
            epoch=self._epoch,
            rank=rank if train else 0,
            world_size=world if train else 1,
        )

    def train_dataloader(self) -> Any:
        return (
            self.device_batches(True) if self.uses_device_loader() else super().train_dataloader()
        )

    def val_dataloader(self) -> Any:
        return self.device_batches(False) if self.uses_device_loader() else super().val_dataloader()

    # -- LightningDataModule -----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        """Load the data once (idempotent) and apply ``train_limit`` / ``test_limit``."""
        if self.train_set is not None:
            return
        train, train_eval, test = self._build()
        idx = limit_indices(len(train), self.train_limit, "dataset.train_limit")
        if idx is not None:
            train, train_eval = Subset(train, idx.tolist()), Subset(train_eval, idx.tolist())
        idx = limit_indices(len(test), self.test_limit, "dataset.test_limit")
        if idx is not None:
            test = Subset(test, idx.tolist())
        self.train_set, self.train_eval_set, self.test_set = train, train_eval, test
