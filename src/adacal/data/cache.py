"""Decode an ImageFolder split (``<split>/<class>/<image>``) once into a uint8 tensor cache.

CIFAR-sized JPEGs decode at ~10k images/s with ``torchvision.io``; the cache (``torch.save``,
loaded with ``weights_only=True``) makes later runs skip decoding entirely. The cache is keyed
on every file's relative path, size and modification time (ns), so an image edited in place
is decoded again. A file that does not decode is named in a
:class:`~adacal.errors.ConfigError` (``dataset.root``); a cache file that does not load is
named in a warning and rebuilt.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset
from torchvision.io import ImageReadMode, decode_image, read_file

from adacal.checkpoint import first_line, write_atomic
from adacal.errors import ConfigError

log = logging.getLogger(__name__)


class ImageCache(NamedTuple):
    """``images`` uint8 ``[N, C, H, W]``, ``labels`` long ``[N]``, ``classes`` in label order."""

    images: Tensor
    labels: Tensor
    classes: list[str]


def list_image_folder(split_dir: str | Path) -> tuple[list[tuple[str, int]], list[str]]:
    """``(path, label)`` list and classes, ordered exactly as ``ImageFolder`` orders them."""
    classes, class_to_idx = find_classes(str(split_dir))
    return make_dataset(str(split_dir), class_to_idx, extensions=IMG_EXTENSIONS), classes


def cache_key(
    samples: list[tuple[str, int]], split_dir: str | Path, image_size: int | None, channels: int
) -> str:
    """sha1 over relative paths, file sizes, modification times (ns), labels and decode options.

    The modification time makes an in-place edit that keeps the size a new key (a copy that
    keeps times, ``cp -p`` / ``tar``, keeps the key)."""
    h = hashlib.sha1(f"{image_size}|{channels}".encode())
    root = str(split_dir)
    for path, label in samples:
        st = os.stat(path)
        rel = os.path.relpath(path, root)
        h.update(f"{rel}|{st.st_size}|{st.st_mtime_ns}|{label}\n".encode())
    return h.hexdigest()[:16]


def _decode(path: str, mode: ImageReadMode) -> Tensor:
    """One file -> uint8 ``[C, H, W]``.

    torchvision 0.29 warns that ``torchvision.io`` decoding is deprecated in favour of TorchCodec;
    it is ~2x faster than PIL for CIFAR JPEGs, so it stays while it exists.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return decode_image(read_file(path), mode=mode)
        except (RuntimeError, ValueError, OSError) as err:
            raise ConfigError(
                "dataset.root",
                f"cannot decode {path} ({first_line(err)}); replace or remove the file",
            ) from err


def decode_images(paths: list[str], image_size: int | None = None, channels: int = 3) -> Tensor:
    """Decode image files to uint8 ``[N, C, S, S]``; images of another size are resized (bilinear)
    to ``image_size`` (``None``: all must have the first image's size)."""
    mode = ImageReadMode.RGB if channels == 3 else ImageReadMode.GRAY
    out: Tensor | None = None
    for i, path in enumerate(paths):
        img = _decode(path, mode)
        if out is None:
            size = img.shape[-2:] if image_size is None else (image_size, image_size)
            out = torch.empty((len(paths), channels, *size), dtype=torch.uint8)
        if img.shape[-2:] != out.shape[-2:]:
            img = F.interpolate(
                img[None].float(), size=out.shape[-2:], mode="bilinear", antialias=True
            )
            img = img[0].round().clamp(0, 255).to(torch.uint8)
        out[i] = img
    if out is None:
        return torch.empty((0, channels, image_size or 0, image_size or 0), dtype=torch.uint8)
    return out


def build_image_cache(
    split_dir: str | Path,
    cache_dir: str | Path | None = None,
    image_size: int | None = None,
    channels: int = 3,
) -> ImageCache:
    """Load ``split_dir`` (ImageFolder layout) as uint8 tensors.

    Cached in ``<cache_dir>/.adacal_cache_<split>_<key>.pt``.

    The file is reused when the key (file list, sizes, options) matches, written otherwise;
    ``cache_dir=None`` keeps it in memory only. An unwritable ``cache_dir`` only logs a warning.
    """
    split_dir = Path(split_dir)
    samples, classes = list_image_folder(split_dir)
    cache_file = None
    if cache_dir is not None:
        key = cache_key(samples, split_dir, image_size, channels)
        cache_file = Path(cache_dir) / f".adacal_cache_{split_dir.name}_{key}.pt"
        if cache_file.is_file():
            cached = _load_cache(cache_file, len(samples))
            if cached is not None:
                return cached
    images = decode_images([p for p, _ in samples], image_size, channels)
    labels = torch.tensor([t for _, t in samples], dtype=torch.long)
    if cache_file is not None:
        payload = {"images": images, "labels": labels, "classes": classes}
        try:
            write_atomic(cache_file, lambda f: torch.save(payload, f))
        except OSError as exc:
            log.warning(
                "could not write image cache %s (%s); keeping it in memory only", cache_file, exc
            )
    return ImageCache(images, labels, classes)


def _load_cache(cache_file: Path, count: int) -> ImageCache | None:
    """The cache in ``cache_file``, or None (with a warning naming it) when it does not load
    or does not hold ``count`` images: the caller decodes the images again."""
    try:
        data = torch.load(cache_file, map_location="cpu", weights_only=True)
        cached = ImageCache(data["images"], data["labels"], list(data["classes"]))
        if len(cached.images) != count or len(cached.labels) != count:
            raise ValueError(f"holds {len(cached.images)} images, expected {count}")
    except Exception as exc:  # truncated, corrupt or foreign file: it is only a cache
        reason = first_line(exc)
        log.warning("image cache %s is unreadable (%s); decoding again", cache_file, reason)
        return None
    return cached
