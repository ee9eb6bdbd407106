"""The datamodule base of every event data set: event frames held as one uint8 tensor.

A sample is ``2·n_bins`` count maps (N time bins × 2 polarities, channel ``2·bin + p``,
:mod:`adacal.data.events.representation`) of ``image_size × image_size`` pixels, saturated at
255 and stored as uint8 ``[N, 2·n_bins, S, S]``, so the CIFAR machinery applies unchanged:
:class:`~adacal.data.base.TensorImageDataset`, crop/flip augmentation on tensors, the device
loader and the fixed calibration subset. Normalisation: ``(x/255 − mean_c)/std_c`` with the
per-channel mean and std of the training frames (computed once per setup).

The frames are decoded (or emulated) once and cached with ``torch.save`` in
``<cache_dir>/.adacal_events_<name>_<split>_<key>.pt``; the key covers the source files (or
the emulator's parameters) and the representation, so changing either rebuilds the cache.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adacal.checkpoint import first_line, write_atomic
from adacal.data.base import ClassificationDataModule, TensorImageDataset, check_positive
from adacal.errors import ConfigError

log = logging.getLogger(__name__)

EVENT_AUGMENT = {"crop_padding": 0, "flip": True, "autoaugment": False, "cutout": 0}


def channel_stats(frames: Tensor, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of ``frames / 255`` (uint8 ``[N, C, H, W]``), in chunks; a
    channel that is constant gets std 1/255 (no division by zero)."""
    c = frames.shape[1]
    total, sq = torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for part in frames.split(chunk):
        x = part.double() / 255.0
        total += x.sum(dim=(0, 2, 3))
        sq += (x * x).sum(dim=(0, 2, 3))
    n = max(frames.numel() // max(c, 1), 1)
    mean = total / n
    std = (sq / n - mean * mean).clamp(min=0).sqrt().clamp(min=1 / 255)
    return mean.tolist(), std.tolist()


def load_frames_cache(path: Path) -> dict[str, Any] | None:
    """The cached payload (``frames`` uint8, ``labels`` long, ...) or None (with a warning)
    when it does not load: the caller builds it again."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        if data["frames"].dtype != torch.uint8 or len(data["frames"]) != len(data["labels"]):
            raise ValueError("frames and labels do not match")
        return data
    except Exception as exc:  # truncated, corrupt or foreign file: it is only a cache
        log.warning("event cache %s is unreadable (%s); building it again", path, first_line(exc))
        return None


def save_frames_cache(path: Path, payload: dict[str, Any]) -> None:
    """Write the payload atomically; an unwritable folder only logs a warning."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda f: torch.save(payload, f))
    except OSError as exc:
        log.warning("could not write event cache %s (%s); keeping it in memory", path, exc)


class EventFramesDataModule(ClassificationDataModule):
    """Base: subclasses implement ``_load() -> (train uint8 [N, 2·n_bins, S, S], train labels,
    test frames, test labels)`` and set ``classes``."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        in_channels: int,
        image_size: int,
        n_bins: int,
        root: str | None = None,
        download: bool = False,
        epochs: int | None = None,  # the recipe's training length (read by the trainer config)
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
            batch_size, eval_batch_size, num_workers, augment, EVENT_AUGMENT,
            test_limit, train_limit, seed, pin_memory, device_loader=device_loader,
        )  # fmt: skip
        self.n_bins = check_positive("dataset.n_bins", n_bins)
        if int(in_channels) != 2 * self.n_bins:
            raise ConfigError(
                "dataset.in_channels",
                f"event frames have 2 polarities × dataset.n_bins={self.n_bins} = "
                f"{2 * self.n_bins} channels, got {in_channels}; set dataset.in_channels="
                f"{2 * self.n_bins}",
            )
        if self.augment.get("autoaugment"):
            raise ConfigError("dataset.augment.autoaugment", "AutoAugment needs RGB images")
        self.name = name
        self.num_classes, self.in_channels = int(num_classes), int(in_channels)
        self.image_size = check_positive("dataset.image_size", image_size)
        self.root, self.download = root, bool(download)
        self.cache, self.cache_dir = bool(cache), cache_dir
        self.classes: list[str] = []

    # -- subclass hook -----------------------------------------------------------------
    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        raise NotImplementedError

    def cache_folder(self) -> Path | None:
        """Where the frames are cached: ``cache_dir``, else ``root``; None with ``cache=false``."""
        if not self.cache:
            return None
        folder = self.cache_dir or self.root
        return Path(folder).expanduser() if folder is not None else None

    def _check_classes(self, found: int, where: object) -> None:
        if found != self.num_classes:
            raise ConfigError(
                "dataset.num_classes",
                f"{where} holds {found} classes but dataset.num_classes={self.num_classes}",
            )

    def _build(self) -> tuple[TensorImageDataset, TensorImageDataset, TensorImageDataset]:
        xtr, ytr, xte, yte = self._load()
        self.mean, self.std = channel_stats(xtr)
        return (
            TensorImageDataset(xtr, ytr, self.train_transform()),
            TensorImageDataset(xtr, ytr, self.eval_transform()),
            TensorImageDataset(xte, yte, self.eval_transform()),
        )
