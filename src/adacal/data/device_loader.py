"""An iterable of batches over uint8 images that live on the training device.

The whole (decoded) data set sits on the device as one uint8 tensor (CIFAR-10's 50,000
training images are 154 MB); each epoch shuffles with a generator seeded from
``(seed, epoch)`` and augments whole batches there (:class:`BatchAugment`). No worker
processes and no host-to-device copies per batch. Lightning accepts it wherever a
DataLoader goes (it has ``__iter__`` and ``__len__``).

Under data parallelism each of ``world_size`` processes takes every ``world_size``-th
sample of the epoch's permutation (the same split as ``DistributedSampler`` without
padding: a training epoch may drop up to ``world_size - 1`` samples).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from adacal.data.batch_augment import BatchAugment

SEED_STRIDE = 1_000_003  # epoch e draws from seed · stride + e (distinct streams per seed)


class DeviceBatches:
    """Batches ``(x float [b, C, H, W], y long [b])`` of ``images`` uint8 ``[N, C, H, W]``.

    ``epoch`` is read at each ``iter()`` (Lightning's ``trainer.current_epoch``), so a
    resumed run replays the same permutation and augmentation for the same epoch.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        augment: BatchAugment,
        device: torch.device | str = "cpu",
        shuffle: bool = True,
        drop_last: bool = False,
        seed: int = 0,
        epoch: Callable[[], int] | None = None,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels):
            raise ValueError(f"expected uint8 [N,C,H,W] images and [N] labels, got {images.shape}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, dtype=torch.long)
        self.batch_size = int(batch_size)
        self.augment = augment
        self.shuffle, self.drop_last = bool(shuffle), bool(drop_last)
        self.seed = int(seed)
        self.epoch = epoch or (lambda: 0)
        self.rank, self.world_size = int(rank), int(world_size)

    def _count(self) -> int:
        """Samples this process sees per epoch."""
        n = len(self.images)
        return n // self.world_size if self.world_size > 1 else n

    def __len__(self) -> int:
        n = self._count()
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def generator(self, epoch: int) -> torch.Generator:
        """The epoch's generator on the data's device (permutation and augmentation draws)."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(self.seed * SEED_STRIDE + epoch)
        return gen

    def order(self, gen: torch.Generator) -> Tensor:
        """This process's sample indices for the epoch, long ``[count]``."""
        n = len(self.images)
        if self.shuffle:
            idx = torch.randperm(n, generator=gen, device=self.device)
        else:
            idx = torch.arange(n, device=self.device)
        if self.world_size > 1:
            idx = idx[: self._count() * self.world_size][self.rank :: self.world_size]
        return idx

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        gen = self.generator(int(self.epoch()))
        idx = self.order(gen)
        for k in range(len(self)):
            sel = idx[k * self.batch_size : (k + 1) * self.batch_size]
            yield self.augment(self.images[sel], gen), self.labels[sel]
