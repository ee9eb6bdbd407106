"""A synthetic segmentation set made on the fly: filled rectangles and discs on noise.

Image i (seed, i fixed): a smooth random background colour plus noise, then 1-3 shapes,
each of a random class 1..K−1 (class c has its own base colour, jittered), label 0 is the
background. No files and no network: the smoke runs and tests of ``task=segmentation`` use
it, and any experiment can swap it in with ``dataset=shapes`` (a two-step run of a
paper-scale config on a laptop).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from adacal.data.segmentation import SegmentationDataModule, as_size
from adacal.errors import ConfigError


def make_shapes(
    n: int, size: tuple[int, int], num_classes: int, seed: int, split: int = 0
) -> tuple[list[Tensor], list[Tensor]]:
    """``n`` images uint8 [3, H, W] and label maps uint8 [H, W] (values 0..num_classes−1).

    The class colours depend on ``seed`` only; the images on ``seed`` and ``split``.
    """
    palette = torch.rand(num_classes, 3, generator=torch.Generator().manual_seed(int(seed)))
    palette = palette * 200 + 30
    gen = torch.Generator().manual_seed(int(seed) * 1000 + 1 + int(split))
    h, w = size
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    images, labels = [], []
    for _ in range(n):
        img = palette[0].view(3, 1, 1) + 25 * torch.randn(3, h, w, generator=gen)
        lab = torch.zeros(h, w, dtype=torch.uint8)
        for _ in range(int(torch.randint(1, 4, (), generator=gen))):
            c = int(torch.randint(1, num_classes, (), generator=gen))
            cy, cx = (torch.rand(2, generator=gen) * torch.tensor([h, w])).tolist()
            ry, rx = (torch.rand(2, generator=gen) * 0.25 + 0.1).mul(min(h, w)).tolist()
            if float(torch.rand((), generator=gen)) < 0.5:
                mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            else:
                mask = ((yy - cy).abs() <= ry) & ((xx - cx).abs() <= rx)
            colour = palette[c] + 15 * torch.randn(3, generator=gen)
            img = torch.where(
                mask, colour.view(3, 1, 1) + 10 * torch.randn(3, h, w, generator=gen), img
            )
            lab[mask] = c
        images.append(img.round().clamp(0, 255).to(torch.uint8))
        labels.append(lab)
    return images, labels


class ShapesDataModule(SegmentationDataModule):
    """``num_train`` / ``num_test`` synthetic images of ``image_size`` (see module docstring)."""

    name = "shapes"

    def __init__(
        self,
        num_classes: int = 4,
        image_size: Any = 64,
        num_train: int = 256,
        num_test: int = 64,
        name: str | None = None,
        epochs: int | None = None,
        in_channels: int = 3,
        root: str | None = None,  # accepted and ignored: experiments may set a data root
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if int(num_classes) < 2:
            raise ConfigError(
                "dataset.num_classes", f"needs >= 2 (background + 1), got {num_classes}"
            )
        self.num_classes = int(num_classes)
        self.class_names = ["background", *(f"shape{c}" for c in range(1, self.num_classes))]
        self.image_size = as_size(image_size, "dataset.image_size")
        self.num_train = int(num_train)
        self.num_test = int(num_test)
        self.mean, self.std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)

    def _load(self) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        assert self.image_size is not None
        train = make_shapes(self.num_train, self.image_size, self.num_classes, self.seed, 0)
        test = make_shapes(self.num_test, self.image_size, self.num_classes, self.seed, 1)
        return (*train, *test)
