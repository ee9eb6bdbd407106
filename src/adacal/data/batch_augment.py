"""Batched augmentation of uint8 image tensors on any device (the GPU data path for CIFAR).

The same semantics as the per-image :class:`adacal.data.transforms.TensorTransform`, applied to
a whole batch ``[B, C, H, W]`` at once with per-sample random draws:

1. zero-pad by ``p`` and crop an ``H x W`` window at offsets ``(i, j) ~ U{0..2p}²``;
2. horizontal flip with probability 1/2;
3. optional CIFAR AutoAugment (one sub-policy draw per group of ``autoaugment_group`` images);
4. ``x / 255``, normalise with the data set's mean and std;
5. Cutout: zero a ``s x s`` square centred at ``(cy, cx) ~ U{0..H-1} x U{0..W-1}``, clipped
   at the border (zero = the mean after normalising).

Every draw comes from an explicit ``torch.Generator`` so an epoch's augmentation is a pure
function of ``(seed, epoch)`` and a resumed run sees the same batches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.transforms import AutoAugment, AutoAugmentPolicy


def crop_batch(x: Tensor, padding: int, i: Tensor, j: Tensor) -> Tensor:
    """Zero-pad ``x`` ``[B, C, H, W]`` by ``padding`` and take ``out[b] = padded[b, :, i_b : i_b +
    H, j_b : j_b + W]`` for offsets ``i, j`` long ``[B]`` in ``[0, 2·padding]``."""
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (i.view(b, 1) + torch.arange(h, device=x.device)).view(b, 1, h, 1)
    cols = (j.view(b, 1) + torch.arange(w, device=x.device)).view(b, 1, 1, w)
    batch = torch.arange(b, device=x.device).view(b, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


def flip_batch(x: Tensor, flip: Tensor) -> Tensor:
    """``x[b].flip(-1)`` where ``flip[b]`` (bool ``[B]``), else ``x[b]``."""
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def cutout_batch(x: Tensor, size: int, cy: Tensor, cx: Tensor) -> Tensor:
    """Zero rows ``[max(0, cy - s//2), min(H, cy + s - s//2))`` × the same for columns of each
    sample of ``x`` ``[B, C, H, W]`` (``cy, cx`` long ``[B]``); as :func:`transforms.cutout`."""
    if size <= 0:
        return x
    _, _, h, w = x.shape
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    cy, cx = cy.view(-1, 1, 1), cx.view(-1, 1, 1)
    inside = (
        (ys >= cy - size // 2)
        & (ys < cy + size - size // 2)
        & (xs >= cx - size // 2)
        & (xs < cx + size - size // 2)
    )
    return x.masked_fill(inside.unsqueeze(1), 0.0)


class BatchAugment:
    """Callable ``(uint8 [B, C, H, W], generator) -> float [B, C, H, W]`` (normalised).

    ``train=False``: normalisation only (the test-time transform).
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = True,
        crop_padding: int = 0,
        flip: bool = False,
        autoaugment: bool = False,
        cutout: int = 0,
        autoaugment_group: int = 16,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.train = bool(train)
        self.crop_padding = int(crop_padding)
        self.flip = bool(flip)
        self.autoaugment = AutoAugment(AutoAugmentPolicy.CIFAR10) if autoaugment else None
        self.autoaugment_group = max(1, int(autoaugment_group))
        self.cutout = int(cutout)

    def normalise(self, x: Tensor) -> Tensor:
        """uint8 ``[B, C, H, W]`` -> float ``(x / 255 - mean) / std``."""
        mean, std = self.mean.to(x.device), self.std.to(x.device)
        return (x.float().div_(255.0) - mean) / std

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if not self.train:
            return self.normalise(x)
        b, _, h, w = x.shape
        dev = x.device

        def draw(high: int) -> Tensor:
            return torch.randint(0, high, (b,), generator=generator, device=dev)

        if self.crop_padding > 0:
            x = crop_batch(
                x,
                self.crop_padding,
                draw(2 * self.crop_padding + 1),
                draw(2 * self.crop_padding + 1),
            )
        if self.flip:
            x = flip_batch(x, draw(2).bool())
        if self.autoaugment is not None:  # torchvision draws one sub-policy per call
            x = torch.cat([self.autoaugment(g) for g in x.split(self.autoaugment_group)])
        out = self.normalise(x)
        if self.cutout > 0:
            out = cutout_batch(out, self.cutout, draw(h), draw(w))
        return out
