"""``dataset=cifar10_events``: an offline event data set emulated from CIFAR-10.

Our local stand-in for event-driven classification, never called CIFAR10-DVS: every CIFAR-10
image moves along a small circle (as CIFAR10-DVS moved images on a monitor) in front of an
emulated event camera (:mod:`adacal.data.events.emulator`); the events are binned into
``n_bins`` time bins × 2 polarities (:mod:`adacal.data.events.representation`). The frames of
each split are cached under ``dataset.root`` (``data/cifar10_events/``, git-ignored), keyed on
the source images and every emulator and representation parameter. See docs/events.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from adacal.data.cache import build_image_cache
from adacal.data.cifar import load_torchvision, resolve_source
from adacal.data.events.emulator import (
    EmulatorConfig,
    emulate,
    emulate_frame_counts,
    log_frames,
    threshold_maps,
)
from adacal.data.events.frames import EventFramesDataModule, load_frames_cache, save_frames_cache
from adacal.data.events.representation import as_channels, frame_counts, resize_counts, to_uint8
from adacal.errors import ConfigError

log = logging.getLogger(__name__)
CACHE_VERSION = 1  # bump when the emulator's output changes for the same parameters


def emulator_config(options: Mapping[str, Any] | None) -> EmulatorConfig:
    """``dataset.emulator`` -> :class:`EmulatorConfig`; an unknown key or a bad value is a
    ConfigError naming it."""
    known = {f.name for f in dataclasses.fields(EmulatorConfig)}
    values = dict(options or {})
    for key in values:
        if key not in known:
            raise ConfigError(f"dataset.emulator.{key}", f"unknown option; valid: {sorted(known)}")
    cfg = EmulatorConfig(**values)
    for key in ("threshold", "eps", "steps", "loops", "duration_us"):
        if not getattr(cfg, key) > 0:
            raise ConfigError(
                f"dataset.emulator.{key}", f"must be positive, got {getattr(cfg, key)}"
            )
    if cfg.mismatch < 0 or cfg.radius < 0:
        raise ConfigError("dataset.emulator", "mismatch and radius must be >= 0")
    return cfg


def emulate_frames(images: Tensor, cfg: EmulatorConfig, n_bins: int, chunk: int = 1024) -> Tensor:
    """uint8 images ``[N, C, H, W]`` -> event counts int32 ``[N, n_bins, 2, H, W]`` over the
    recording ``[0, duration_us]``, ``chunk`` images at a time. Takes the timestamp-free path
    (:func:`~adacal.data.events.emulator.emulate_frame_counts`) when bins hold whole steps."""
    c_on, c_off = threshold_maps(tuple(images.shape[-2:]), cfg)
    exact = cfg.steps % n_bins == 0 and cfg.duration_us % cfg.steps == 0
    out = []
    for part in images.split(chunk):
        frames = log_frames(part, cfg)
        if exact:
            out.append(emulate_frame_counts(frames, c_on, c_off, n_bins))
            continue
        ev = emulate(frames, cfg.times(), c_on, c_off)
        h, w = part.shape[-2:]
        out.append(frame_counts(*ev, len(part), (w, h), n_bins, 0, cfg.duration_us))
    return torch.cat(out)


class CIFAR10EventsDataModule(EventFramesDataModule):
    """CIFAR-10 through the event emulator: ``2·n_bins`` count maps per image, 10 classes,
    CIFAR-10's own train/test split. ``source_root``: CIFAR-10 as for ``dataset=cifar10``."""

    def __init__(
        self,
        source_root: str | None = None,
        emulator: Mapping[str, Any] | None = None,
        chunk: int = 1024,
        name: str = "cifar10_events",
        num_classes: int = 10,
        in_channels: int = 8,
        image_size: int = 32,
        n_bins: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(name, num_classes, in_channels, image_size, n_bins, **kwargs)
        self._check_classes(num_classes, "CIFAR-10")
        self.source_root = source_root
        self.emulator = emulator_config(emulator)
        self.chunk = int(chunk)
        self.classes = []

    def _source(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """CIFAR-10 uint8 ``[N, 3, 32, 32]`` train/test images and labels."""
        try:
            kind, path = resolve_source(self.source_root, self.download, 10)
        except ConfigError as err:  # the CIFAR-10 images come from dataset.source_root here
            raise ConfigError("dataset.source_root", err.detail) from err
        if kind != "folder":
            return load_torchvision(path, 10, self.download)
        parts = [build_image_cache(path / s, path, 32) for s in ("train", "test")]
        self.classes = parts[0].classes
        return parts[0].images, parts[0].labels, parts[1].images, parts[1].labels

    def cache_key(self, images: Tensor) -> str:
        """sha1 over the source pixels, the emulator and the representation (16 hex digits)."""
        h = hashlib.sha1(images.contiguous().numpy().tobytes())
        h.update(repr((CACHE_VERSION, self.emulator, self.n_bins, self.image_size)).encode())
        return h.hexdigest()[:16]

    def _split_frames(self, split: str, images: Tensor, labels: Tensor) -> Tensor:
        """The cached (or freshly emulated) uint8 frames ``[N, 2·n_bins, S, S]`` of one split."""
        folder = self.cache_folder()
        path = None
        if folder is not None:
            path = folder / f".adacal_events_{self.name}_{split}_{self.cache_key(images)}.pt"
            if path.is_file() and (data := load_frames_cache(path)) is not None:
                return data["frames"]
        start = time.perf_counter()
        counts = emulate_frames(images, self.emulator, self.n_bins, self.chunk)
        events = counts.sum(dim=(1, 2, 3, 4))
        frames = as_channels(counts)
        if self.image_size != frames.shape[-1]:
            frames = resize_counts(frames, self.image_size)
        frames = to_uint8(frames)
        seconds = time.perf_counter() - start
        log.info(
            "%s %s: emulated %d images in %.0f s (%.0f images/s), %.0f events/image",
            self.name, split, len(images), seconds, len(images) / seconds, events.float().mean(),
        )  # fmt: skip
        if path is not None:
            payload = {"frames": frames, "labels": labels, "events": events}
            save_frames_cache(Path(path), payload)
        return frames

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        xtr, ytr, xte, yte = self._source()
        return (
            self._split_frames("train", xtr, ytr),
            ytr,
            self._split_frames("test", xte, yte),
            yte,
        )
