"""CIFAR10-DVS, N-Caltech101 and DVS128 Gesture from a local copy in tonic's on-disk layout,
decoded once into event frames (:mod:`adacal.data.events.frames`).

``dataset.root`` is the folder tonic downloads into (``tonic.datasets.<Name>(save_to=root)``)
or the data folder itself:

- CIFAR10-DVS: ``[root/CIFAR10DVS/]<class>/*.aedat4`` (tonic's repackaging; needs the
  ``aedat`` package) or ``*.aedat`` (the original AEDAT 2.0 release, read as SpikingJelly
  reads it); 128×128 sensor; 10 classes; no official split.
- N-Caltech101: ``[root/NCALTECH101/]Caltech101/<class>/*.bin`` (tonic.io.read_mnist_file,
  x and y shifted to start at 0 as tonic does); framed on a fixed 240×180 sensor; 101
  folders (100 objects + BACKGROUND_Google); no official split.
- DVS128 Gesture: ``[root/DVSGesture/]ibmGestureTrain|ibmGestureTest/user<NN>_<light>/<label>.npy``
  (tonic's preprocessed arrays ``[E, 4]`` = x, y, p, t in ms); official train/test split.

Without an official split, each class is split 90/10 (``dataset.test_fraction``) after a seeded
shuffle (``dataset.split_seed``; null keeps the file order, as the authors'
``split_to_train_test_set(0.9, ...)``); the test files are listed in
``<cache folder>/<name>_split_<seed>.json``. ``dataset.download=true`` lets tonic fetch the
archives (network needed); otherwise a missing copy is a ConfigError naming ``dataset.root``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from adacal.checkpoint import first_line
from adacal.data.events.emulator import EVENT_DTYPE
from adacal.data.events.frames import EventFramesDataModule, load_frames_cache, save_frames_cache
from adacal.data.events.representation import as_channels, resize_counts, to_frames, to_uint8
from adacal.errors import ConfigError

log = logging.getLogger(__name__)
CACHE_VERSION = 1
Sample = tuple[Path, int]


def structured(x: Any, y: Any, t: Any, p: Any) -> np.ndarray:
    """Fields -> tonic's structured array (:data:`EVENT_DTYPE`)."""
    out = np.empty(len(t), dtype=EVENT_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, np.asarray(p) > 0
    return out


def read_aedat_dvs128(path: Path) -> np.ndarray:
    """The original CIFAR10-DVS ``.aedat`` (AEDAT 2.0, DVS128): ``#`` header lines, then
    big-endian uint32 (address, timestamp µs) pairs; x, y and p decoded and oriented as
    SpikingJelly's ``CIFAR10DVS.load_origin_data``."""
    raw = path.read_bytes()
    start = 0
    while raw.startswith(b"#", start):
        start = raw.index(b"\n", start) + 1
    data = np.frombuffer(raw[start : start + (len(raw) - start) // 8 * 8], dtype=">u4")
    addr, t = data[0::2].astype(np.int64), data[1::2].astype(np.int64)
    x_raw, y_raw, p_raw = (addr & 0xFE) >> 1, (addr & 0x7F00) >> 8, addr & 1
    return structured(127 - y_raw, 127 - x_raw, t, 1 - p_raw)


def read_aedat4(path: Path) -> np.ndarray:
    """tonic's CIFAR10-DVS ``.aedat4`` via ``tonic.io.read_aedat4`` (the ``aedat`` package)."""
    from tonic.io import read_aedat4 as tonic_read

    try:
        events = tonic_read(str(path))
    except ImportError as exc:
        raise ConfigError(
            "dataset.root", f"reading {path} needs the aedat package: pip install aedat==2.3.0"
        ) from exc
    t, x, y, p = (events[n] for n in events.dtype.names[:4])  # tonic renames them t, x, y, p
    return structured(x, y, t, p)


def read_ncaltech_bin(path: Path) -> np.ndarray:
    """N-Caltech101 ``.bin`` (40-bit events) via tonic; x and y start at 0 (as tonic)."""
    from tonic.datasets import NCALTECH101
    from tonic.io import read_mnist_file

    ev = read_mnist_file(str(path), dtype=NCALTECH101.dtype)
    if len(ev) == 0:
        return structured([], [], [], [])
    return structured(ev["x"] - ev["x"].min(), ev["y"] - ev["y"].min(), ev["t"], ev["p"])


def read_gesture_npy(path: Path) -> np.ndarray:
    """tonic's DVS128 Gesture ``.npy``: ``[E, 4]`` = x, y, p, t (ms) -> t in µs (as tonic)."""
    a = np.load(path)
    return structured(a[:, 0], a[:, 1], a[:, 3].astype(np.int64) * 1000, a[:, 2])


@dataclass(frozen=True)
class EventSource:
    """One data set's layout: tonic's class (and folder) name, the sub-folders that may hold
    the data under ``root``, the sensor ``(W, H)``, readers by suffix, the official split
    folders (empty: split by ``test_fraction``)."""

    tonic_name: str
    folders: tuple[str, ...]
    sensor: tuple[int, int]
    readers: dict[str, Callable[[Path], np.ndarray]]
    splits: tuple[str, str] | None = None

    def find(self, root: Path) -> Path | None:
        """The first candidate folder under ``root`` that holds event files, or None."""
        for sub in self.folders:
            folder = root / sub if sub else root
            if folder.is_dir() and any(
                p.suffix in self.readers for p in folder.glob("**/*") if p.is_file()
            ):
                return folder
        return None


SOURCES: dict[str, EventSource] = {
    "cifar10_dvs": EventSource(
        "CIFAR10DVS", ("CIFAR10DVS", ""), (128, 128),
        {".aedat4": read_aedat4, ".aedat": read_aedat_dvs128},
    ),
    "ncaltech101": EventSource(
        "NCALTECH101", ("NCALTECH101/Caltech101", "Caltech101", ""), (240, 180),
        {".bin": read_ncaltech_bin},
    ),
    "dvs_gesture": EventSource(
        "DVSGesture", ("DVSGesture", ""), (128, 128), {".npy": read_gesture_npy},
        splits=("ibmGestureTrain", "ibmGestureTest"),
    ),
}  # fmt: skip
GESTURES = [
    "hand clapping", "right hand wave", "left hand wave", "right arm cw", "right arm ccw",
    "left arm cw", "left arm ccw", "arm roll", "air drums", "air guitar", "other gestures",
]  # fmt: skip


def list_class_folders(folder: Path, suffixes: tuple[str, ...]) -> tuple[list[Sample], list[str]]:
    """``<folder>/<class>/<file>`` -> ``(path, label)`` sorted by class then file, and classes."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    samples = [
        (f, label)
        for label, c in enumerate(classes)
        for f in sorted((folder / c).iterdir())
        if f.suffix in suffixes
    ]
    return samples, classes


def list_gesture_split(folder: Path) -> list[Sample]:
    """``<folder>/user<NN>_<lighting>/<label>.npy`` -> ``(path, label)``, sorted."""
    return [(f, int(f.stem)) for f in sorted(folder.glob("user*/*.npy"))]


def split_per_class(
    labels: Tensor, test_fraction: float, seed: int | None
) -> tuple[Tensor, Tensor]:
    """Per class: ``ceil((1 − test_fraction)·n)`` samples train, the rest test, after a shuffle
    by ``torch.Generator().manual_seed(seed)`` (``None``: file order). Index tensors."""
    train, test = [], []
    for c in torch.unique(labels).tolist():
        idx = torch.nonzero(labels == c).squeeze(1)
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed) + 1000 * int(c))
            idx = idx[torch.randperm(len(idx), generator=gen)]
        n_train = math.ceil((1.0 - test_fraction) * len(idx))
        train.append(idx[:n_train])
        test.append(idx[n_train:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def files_key(samples: list[Sample], root: Path, extra: str) -> str:
    """sha1 over relative paths, sizes, modification times (ns) and ``extra`` (16 hex digits)."""
    h = hashlib.sha1(extra.encode())
    for path, label in samples:
        st = os.stat(path)
        h.update(f"{os.path.relpath(path, root)}|{st.st_size}|{st.st_mtime_ns}|{label}\n".encode())
    return h.hexdigest()[:16]


def tonic_download(name: str, source: EventSource, root: Path) -> None:
    """Let tonic fetch and extract the archives into ``root/<tonic name>/``; a failure (no
    network) is a ConfigError naming ``dataset.download``."""
    import tonic.datasets

    cls = getattr(tonic.datasets, source.tonic_name)
    try:
        if source.splits:
            cls(save_to=str(root), train=True)
            cls(save_to=str(root), train=False)
        else:
            cls(save_to=str(root))
    except (urllib.error.URLError, OSError, RuntimeError, ValueError) as exc:
        raise ConfigError(
            "dataset.download",
            f"tonic could not download {name} into {root} ({first_line(exc)}); without network "
            f"put a local copy there (docs/events.md) and set dataset.download=false",
        ) from exc


class TonicEventDataModule(EventFramesDataModule):
    """An event data set of :data:`SOURCES` (``name``) as ``2·n_bins`` frames of
    ``image_size²`` pixels over each recording (first to last event)."""

    def __init__(
        self,
        name: str,
        test_fraction: float = 0.1,
        split_seed: int | None = 0,
        **kwargs: Any,
    ) -> None:
        if name not in SOURCES:
            raise ConfigError("dataset.name", f"'{name}' is not one of {sorted(SOURCES)}")
        super().__init__(name, **kwargs)
        if not 0.0 < float(test_fraction) < 1.0:
            raise ConfigError("dataset.test_fraction", f"must be in (0, 1), got {test_fraction}")
        self.source = SOURCES[name]
        self.test_fraction, self.split_seed = float(test_fraction), split_seed

    def data_folder(self) -> Path:
        """The folder holding the event files (downloading first when allowed)."""
        if self.root is None:
            raise ConfigError("dataset.root", f"not set; pass the folder of {self.name}")
        root = Path(self.root).expanduser()
        folder = self.source.find(root) if root.is_dir() else None
        if folder is None and self.download:
            tonic_download(self.name, self.source, root)
            folder = self.source.find(root)
        if folder is None:
            kinds = "/".join(self.source.readers)
            raise ConfigError(
                "dataset.root",
                f"no {kinds} files of {self.name} under {root} (layout: docs/events.md); put a "
                f"local copy there, or set dataset.download=true (network needed)",
            )
        return folder

    def _frames(self, samples: list[Sample], folder: Path, split: str) -> Tensor:
        """uint8 ``[N, 2·n_bins, S, S]`` of ``samples``, cached."""
        extra = f"{CACHE_VERSION}|{self.name}|{self.n_bins}|{self.image_size}"
        cache = self.cache_folder()
        path = None
        if cache is not None:
            path = (
                cache / f".adacal_events_{self.name}_{split}_{files_key(samples, folder, extra)}.pt"
            )
            if path.is_file() and (data := load_frames_cache(path)) is not None:
                return data["frames"]
        out = torch.empty((len(samples), 2 * self.n_bins, self.image_size, self.image_size),
                          dtype=torch.uint8)  # fmt: skip
        w, h = self.source.sensor
        for i, (file, _) in enumerate(samples):
            events = self.source.readers[file.suffix](file)
            counts = torch.from_numpy(to_frames(events, (w, h, 2), self.n_bins))[None]
            out[i] = to_uint8(resize_counts(as_channels(counts), self.image_size))[0]
            if (i + 1) % 1000 == 0:
                log.info("%s %s: decoded %d / %d recordings", self.name, split, i + 1, len(samples))
        if path is not None:
            labels = torch.tensor([label for _, label in samples])
            save_frames_cache(path, {"frames": out, "labels": labels})
        return out

    def _record_split(self, samples: list[Sample], folder: Path, test: Tensor) -> None:
        """List the test files of the split beside the cache (``<name>_split_<seed>.json``)."""
        where = self.cache_folder() or Path(self.root or ".")
        record = {
            "dataset": self.name, "split_seed": self.split_seed,
            "test_fraction": self.test_fraction,
            "test": [os.path.relpath(samples[i][0], folder) for i in test.tolist()],
        }  # fmt: skip
        path = where / f"{self.name}_split_{self.split_seed}.json"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(record, indent=1))
        except OSError as exc:
            log.warning("could not record the split in %s (%s)", path, exc)

    def _load(self) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        folder = self.data_folder()
        if self.source.splits:
            parts = [list_gesture_split(folder / s) for s in self.source.splits]
            self.classes = GESTURES
            labels = [torch.tensor([y for _, y in p], dtype=torch.long) for p in parts]
            found = max((int(y.max()) + 1 for y in labels if len(y)), default=0)
            if found > self.num_classes:
                self._check_classes(found, folder)
            xtr = self._frames(parts[0], folder, "train")
            xte = self._frames(parts[1], folder, "test")
            return xtr, labels[0], xte, labels[1]
        samples, self.classes = list_class_folders(folder, tuple(self.source.readers))
        self._check_classes(len(self.classes), folder)
        frames = self._frames(samples, folder, "all")
        labels = torch.tensor([y for _, y in samples], dtype=torch.long)
        train, test = split_per_class(labels, self.test_fraction, self.split_seed)
        self._record_split(samples, folder, test)
        return frames[train], labels[train], frames[test], labels[test]
